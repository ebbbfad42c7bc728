// The mixture-of-experts ops: DeepSpeed's TopKGate decisions
// (deepspeed/moe/sharded_moe.py: _capacity, top1gating, top2gating) and the
// dispatch/combine moves of its MOELayer, between S tokens (S, C) and the
// expert buffer (E, capacity, C) — the very buffer expert parallelism's
// all-to-all moves (docs/architecture.md "Mixture of experts").
// Deliberate differences from DeepSpeed, for determinism and one-process
// equivalence: drops go in position order (top1gating's use_rts draws random
// priorities instead), the second expert is the second-largest gate (no
// top2_2nd_expert_sampling Gumbel noise), one capacity factor for train and
// eval.
#pragma once
#include "autograd/ops.h"

namespace ms {

struct MoeGateOptions {
  int64_t k = 1;                 // 1: Switch (top1gating), 2: GShard (top2gating)
  double capacity_factor = 1.0;  // DeepSpeed's capacity_factor
  int64_t min_capacity = 4;      // DeepSpeed MoE's default
  bool drop_tokens = true;       // false: capacity = the largest expert load
};

// DeepSpeed's _capacity: ceil(tokens / experts · capacity_factor·k), at least
// min_capacity. Computed in f32 as DeepSpeed's torch.tensor(capacity_factor)
// is: 25 tokens on 2 experts at 1.2 are 12.5 · 1.2f = 15.000001, 16 slots (15
// in f64).
int64_t moe_capacity(int64_t tokens, int64_t experts, const MoeGateOptions& o);

// The gate's integer decisions for one group of tokens (no gradient).
struct MoeRouting {
  int64_t tokens = 0, experts = 0, k = 1, capacity = 0;
  Tensor expert;            // i32 (S, k): choice 0 = argmax gate, choice 1 = the next
  Tensor slot;              // i32 (S, k): the capacity slot, -1 where dropped
  Tensor counts;            // i32 (E): choices per expert before dropping (exp_counts)
  Tensor kept;              // i32 (E): choices placed per expert
  Tensor fraction;          // (E), the gates' dtype: share of tokens whose choice 0 is e
  int64_t dropped() const;  // choices that found no slot (reads E counts)
};

// gates (S, E) (softmax probabilities) -> the routing.
MoeRouting moe_route(const Tensor& gates, const MoeGateOptions& o);

// Combine weights (S, k), differentiable in gates: the gate of each kept
// choice, 0 for a dropped one; top-2 renormalizes over the kept choices
// (dividing by max(sum, eps) as DeepSpeed's clamp), top-1 does not.
Tensor moe_gate_weights(const Tensor& gates, const MoeRouting& r);

// x (S, C) -> (E, capacity, C): each kept choice's token in its slot, zeros
// in empty slots (DeepSpeed's einsum "sec,sm->ecm" with the dispatch mask).
Tensor moe_dispatch(const Tensor& x, const MoeRouting& r);

// y (E, capacity, C), weights (S, k) -> (S, C): Σ_j weights[s, j] ·
// y[expert, slot] over kept choices (DeepSpeed's "sec,ecm->sm"). Gradients
// reach y (an exact 0 at slots no token used) and the weights.
Tensor moe_combine(const Tensor& y, const Tensor& weights, const MoeRouting& r);

}  // namespace ms
