// expect: gives every rank all T positions: replicated
// Lesson 17, deliberately wrong: the all-gathered input taken as still sharded over T.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::CAttnInput) return ms::Placement::sharded(1, 3);  // BUG
  return reference_placement(which);
}
