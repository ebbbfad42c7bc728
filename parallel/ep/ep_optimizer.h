// The optimizer step of an expert-parallel run: DeepSpeed's expert and
// non-expert parameter groups. The dense parameters are averaged over the
// whole dp group (D ranks); the experts over the expert-data-parallel group
// (the D/P ranks holding the same experts), and then divided by P as well:
// the holder of expert e already summed, through the all-to-all, the loss
// gradients of the P ranks of its ep group, so Σ over expert-dp / D is the
// one-process average over all D ranks' tokens: the expert gradients are
// summed over expert-dp and divided by the dp world size, so they do not
// depend on ep (DeepSpeed PR #5259, "MoE parameter grads should be summed
// using ep_dp_group and scaled using dp group", and PR #6546 for ZeRO:
// "divide edp_world_size -> divide dp_world_size"; Megatron's DDP
// expert_gradient_scaling_factor = expt_dp / dp). ZeRO 1-2 partition each
// group over its own communicator; the clipping norm is one global norm over
// both (the experts' Σ g² summed over the ep group: each expert counted once).
#pragma once
#include "parallel/ep/ep_groups.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

// The global gradient norm before clipping; collective over dp.
double ep_optimizer_step(ZeroOptimizer& dense, ZeroOptimizer& experts, EpGroups& groups, double lr,
                         double max_norm);

}  // namespace ms
