// What the tp group of one dp replica sends per training step, by Megatron's
// count (Shoeybi et al. 2019 §3; Korthikanti et al. 2022 §4.2.2), for the
// traffic table of `minispeed train --tp` (parallel/comm/ledger.h: measured
// beside the formula). n = B·T·C·4 bytes of one (B, T, C) fp32 activation.
//
// Per micro-step, without sequence parallelism, all all-reduces:
//   forward   2 per layer (g after attention's and the MLP's row layers)
//             + 1 (the vocab-parallel embedding's sum)       of n each
//   backward  2 per layer (f before the column layers)
//             + 1 (f before the tied head)                   of n each
//   cross-entropy: 3 all-reduces of B·T·4 (max, target logit, sum of exp)
// With sequence parallelism each all-reduce of n becomes an all-gather +
// reduce-scatter moving the same bytes: (2L+1) of each forward and backward.
// On top, every column layer (c_attn, c_fc per layer, and the head) keeps
// only its (B, T/t, C) input and all-gathers it again in backward for its
// weight gradient (Megatron's LinearWithGradAccumulationAndAsyncCommunication
// with sequence_parallel; Korthikanti et al. 2022 §4.2.2): (2L+1) more
// all-gathers of n per micro-step. Derivation: forward f = all-gather, g =
// reduce-scatter; backward f' = reduce-scatter, g' = all-gather, plus the
// re-gather: all-gather 2·(2L+1), reduce-scatter 2·(2L+1) — TP's all-reduce
// volume (an all-reduce is one reduce-scatter + one all-gather) plus one
// all-gather per column layer. A recomputed block re-runs its forward, and
// its forward collectives with it.
// ZeRO-3 runs every block's forward twice (once to compute, once again in
// backward to rebuild its graph), so the blocks' forward part counts twice.
// Per step: with SP, one all-reduce of the replicated gradients this rank
// holds (ZeroOptimizer::replicated_grad_numel); always the grad norm's f64.
// A ring moves 2(t−1)/t of an all-reduce per rank, (t−1)/t of an all-gather's
// output or a reduce-scatter's input; totals below are summed over t ranks.
#pragma once
#include <cstdint>

#include "parallel/comm/ledger.h"

namespace ms {

struct TpTrafficShape {
  int64_t B = 0, T = 0, C = 0, n_layer = 0, micro_steps = 1;
  int tp = 1;
  bool sequence_parallel = false;
  bool recompute_blocks = false;      // --checkpoint-activations (ZeRO-3 re-gathers, no recompute)
  int64_t replicated_grad_numel = 0;  // summed over tp per step (SP)
};

StepFormula tp_step_formula(const TpTrafficShape& s);

}  // namespace ms
