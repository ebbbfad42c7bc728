// expect: row-parallel: the Conv1D weight [in, out] is cut along in (dim 0)
// Lesson 17, deliberately wrong: the row-parallel weight cut along its output features.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::AttnProjWeight) return ms::Placement::sharded(-1, 2);  // BUG
  return reference_placement(which);
}
