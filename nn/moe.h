// A mixture-of-experts MLP (DeepSpeed's deepspeed.moe.layer.MoE around
// sharded_moe.py's TopKGate and MOELayer): a linear router C -> E without
// bias (DeepSpeed's wg) and E experts, each a GPT-2 MLP. Tokens go to their
// top-k experts through an (E, capacity, C) buffer and come back weighted by
// their gates (autograd/ops_moe.h); the load-balancing loss l_aux is kept for
// GPT::head_loss to add (docs/architecture.md "Mixture of experts").
#pragma once
#include <memory>
#include <vector>

#include "autograd/ops_moe.h"
#include "nn/gpt.h"

namespace ms {

class MoE : public Module {
 public:
  // Experts start as copies of one GPT-2 MLP init, as DeepSpeed's Experts
  // deep-copies the expert module it is given: the router's choices, not the
  // init, make them differ.
  MoE(const GPTConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x);  // (B, T, C) -> (B, T, C)

  std::shared_ptr<Linear> router;              // (C, E), no bias: "router.weight"
  std::vector<std::shared_ptr<MLP>> experts;  // "experts.0" ... "experts.(E-1)"

  // l_aux of the forwards since the last take (summed; a scalar of the gates'
  // dtype with its graph), then forgotten. Undefined when none ran.
  Tensor take_aux_loss();
  // The routing of the last forward (for tests and the load table).
  const MoeRouting& last_routing() const { return last_; }
  // Choices placed per expert and choices dropped, summed over every forward
  // in training mode since the last reset (the end-of-run load table).
  const std::vector<int64_t>& routed() const { return routed_; }
  int64_t dropped() const { return dropped_; }
  int64_t choices() const { return choices_; }  // tokens · k seen
  void reset_load();

 private:
  MoEConfig moe_;
  MoeRouting last_;
  Tensor aux_;
  std::vector<int64_t> routed_;
  int64_t dropped_ = 0, choices_ = 0;
};

}  // namespace ms
