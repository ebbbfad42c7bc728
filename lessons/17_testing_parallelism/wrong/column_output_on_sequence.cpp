// expect: a column-parallel output is sharded along its last dim
// Lesson 17, deliberately wrong: the column-parallel output thought to keep SP's cut of T.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::CAttnOut) return ms::Placement::sharded(1, 3);  // BUG
  return reference_placement(which);
}
