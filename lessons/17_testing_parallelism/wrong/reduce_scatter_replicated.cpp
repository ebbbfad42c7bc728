// expect: blocks that, laid end to end along dim 1, equal one process's [2, 8, 16]
// expect: under SP g is a reduce-scatter (reduce_scatter_to_sequence_parallel_region)
// Lesson 17, deliberately wrong: g's output taken as replicated, as it is without SP.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::AttnProjReduced) return ms::Placement::replicated();  // BUG
  return reference_placement(which);
}
