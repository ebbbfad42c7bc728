// Dropout streams under tp (random.h).
#include "parallel/tp/random.h"

#include "autograd/ops.h"

namespace ms {

// Megatron: model_parallel_cuda_manual_seed (default and 'model-parallel-rng').
TpGenerators tp_generators(uint64_t seed, int tp_rank) {
  return {Generator(seed), Generator(seed + kModelParallelSeedOffset + uint64_t(tp_rank))};
}

Tensor sequence_parallel_dropout(const Tensor& x_shard, double p, Generator& shared,
                                 Communicator& tp) {
  MS_CHECK(x_shard.dim() >= 2, "sequence_parallel_dropout: expects (B, T/t, ...), got ",
           shape_str(x_shard.shape()));
  if (p == 0) return dropout(x_shard, p, shared);  // validates p, draws nothing
  Shape full_shape = x_shard.shape();
  const int64_t n = full_shape[1];
  full_shape[1] *= tp.size();
  // The serial (B, T, ...) mask, drawn as ms::dropout draws it; only this
  // rank's T/t positions are kept (1 byte each).
  DropoutMask full = draw_dropout_mask(full_shape, p, shared);
  return apply_dropout_mask(x_shard, slice_dropout_mask(full, tp.rank() * n, n));
}

}  // namespace ms
