// Dropout randomness under tensor parallelism (Shoeybi et al. 2019, App. B.2):
// outside the tensor-parallel regions (the embedding's, attention's and MLP's
// output dropouts, which act on replicated activations) every tp rank must
// draw the SAME mask, else the replicas diverge; inside a tensor-parallel
// region (on a rank's own heads or features) the masks must DIFFER across tp
// ranks, else each rank would drop the same columns of its different shard.
// Megatron-LM megatron/core/tensor_parallel/random.py::
// model_parallel_cuda_manual_seed: the default stream is seeded with `seed`
// (same on all tp ranks), the 'model-parallel-rng' with seed + 2718 + tp_rank.
//
// Inside a tp region our GPT has one dropout, on the attention probabilities
// of a rank's own heads (GPTConfig::attn_dropout): TpBlock reseeds that
// module's generator to its seed + 2718 + tp_rank (tp_gpt.h), the per-rank
// stream, so a tp run's attention masks are not one process's (as in
// Megatron). Under sequence parallelism the output dropouts act on different
// tokens per rank. Megatron runs them on the per-rank stream there (cheap,
// but no longer the serial model's masks). sequence_parallel_dropout below
// instead draws the full-sequence mask from the shared stream and keeps this
// rank's positions: t× the random numbers, but a tp + sp run with dropout is
// then the same computation as one process.
#pragma once
#include <cstdint>

#include "parallel/comm/communicator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

// Megatron's offset of the model-parallel seed.
constexpr uint64_t kModelParallelSeedOffset = 2718;

struct TpGenerators {
  Generator shared;    // seed: identical on every tp rank (outside tp regions)
  Generator per_rank;  // seed + 2718 + tp_rank: distinct (inside tp regions)
};
TpGenerators tp_generators(uint64_t seed, int tp_rank);

// x_shard (B, T/t, ...) is this rank's positions [r·T/t, (r+1)·T/t) of a
// (B, T, ...) activation. Draws the (B, T, ...) dropout mask from `shared`
// exactly as ms::dropout would on the whole tensor, and applies this rank's
// slice: the result is the serial dropout's slice, and `shared` advances as
// it would in one process. Identity when p == 0 (no numbers drawn).
Tensor sequence_parallel_dropout(const Tensor& x_shard, double p, Generator& shared,
                                 Communicator& tp);

}  // namespace ms
