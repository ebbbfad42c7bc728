// expect: ln_1 output: rank 0 and rank 1 hold [2, 4, 16] blocks
// expect: LayerNorm, dropout and the residual are per token
// Lesson 17, deliberately wrong: LayerNorm thought to need (and so to hold) the whole sequence.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::Ln1Out) return ms::Placement::replicated();  // BUG
  return reference_placement(which);
}
