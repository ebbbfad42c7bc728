// expect: gradient of ln_1.weight: rank 0 and rank 1 hold different [16] tensors
// expect: its gradient is a partial sum over tokens: allreduce_sequence_parallel_grads must SUM it over tp
// Lesson 17, deliberately wrong: a replicated parameter's gradient taken as replicated under SP.
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::Ln1WeightGrad) return ms::Placement::replicated();  // BUG
  return reference_placement(which);
}
