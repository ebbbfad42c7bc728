// Model FLOP/s for `minispeed train`'s step line: how much of the machine's
// matrix-multiply speed a training step turns into model arithmetic.
#pragma once
#include <cstdint>

#include "nn/gpt.h"

namespace ms {

// Model FLOPs of one optimizer step over `tokens` tokens (PaLM, Chowdhery et al.
// 2022, appendix B — the same count DeepSpeed's flops profiler reports for a
// GPT's matmuls):
//   6·N·tokens                       forward (2 FLOPs per weight per token) + backward (4)
// + 12·L·T·C·tokens                  attention q·kᵀ and att·v: 2·2·T·C per token and
//                                    layer forward, ×3 with backward
// N = all parameters except the position embedding wpe (a lookup, no matmul);
// the token embedding wte stays in N because it is also the tied LM head.
// Attention counts the full T×T, as PaLM does, though the mask zeroes half.
double model_flops_per_step(const GPTConfig& cfg, int64_t n_params, int64_t tokens, int64_t T);

// Best GFLOP/s of our gemm_f32 on one model-like shape (M = 512 tokens,
// N = 3C, K = C for C = 256), at the current OpenMP thread count, over at most
// ~budget_s seconds: the "peak" a step's model FLOP/s is compared with.
double gemm_peak_gflops(double budget_s);

}  // namespace ms
