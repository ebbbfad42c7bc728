// expect: the row-parallel bias is replicated and added once, after the reduction
// Lesson 17, deliberately wrong: the row-parallel bias cut like the weight's features.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::AttnProjBias) return ms::Placement::sharded(0, 1);  // BUG
  return reference_placement(which);
}
