// expect: attn.c_proj GEMM output (before reduction): rank 0 and rank 1 hold different [2, 8, 16] tensors
// expect: the row-parallel output is a partial sum until reduce_scatter_to_sequence_parallel_region (Megatron's g)
// Lesson 17, deliberately wrong: the row-parallel GEMM's output taken as replicated (the skipped all-reduce).
// The reference answer (solution.cpp, renamed) with that one tensor changed.
#include "lessons/17_testing_parallelism/lesson.h"
#define tp_placement reference_placement
#include "lessons/17_testing_parallelism/solution.cpp"
#undef tp_placement

ms::Placement tp_placement(BlockTensor which) {
  if (which == BlockTensor::AttnProjPartial) return ms::Placement::replicated();  // BUG
  return reference_placement(which);
}
