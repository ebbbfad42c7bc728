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
  // The serial mask, already scaled by 1/(1-p): dropout of ones.
  Tensor mask = dropout(ones(full_shape, x_shard.dtype()), p, shared);  // (B, T, ...)
  return mul(x_shard, narrow(mask, 1, tp.rank() * n, n));
}

}  // namespace ms
