// A mixture-of-experts MLP (DeepSpeed's deepspeed.moe.layer.MoE around
// sharded_moe.py's TopKGate and MOELayer): a linear router C -> E without
// bias (DeepSpeed's wg) and E experts, each a GPT-2 MLP. Tokens go to their
// top-k experts through an (E, capacity, C) buffer and come back weighted by
// their gates (autograd/ops_moe.h); the load-balancing loss l_aux is kept for
// GPT::head_loss to add (docs/architecture.md "Mixture of experts").
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "autograd/ops_moe.h"
#include "nn/gpt.h"

namespace ms {

// What an MoE layer's router did over some forwards in training mode.
struct MoELoad {
  std::vector<int64_t> routed;  // (E) choices placed per expert
  int64_t dropped = 0;          // choices that found no capacity slot
  int64_t choices = 0;          // tokens · k
  double aux_sum = 0;           // Σ l_aux over the forwards
  int64_t capacity_slots = 0;   // Σ capacity over the forwards (ep's all-to-all bytes)
  int64_t forwards = 0;
  void add(const MoELoad& o);
};

// Expert parallelism plugs in here (parallel/ep/ep_moe.h builds it): this
// rank runs experts [rank·E/size, (rank+1)·E/size) on the rows every rank of
// its ep group sends it. `exchange` is a differentiable all-to-all over dim 0
// of an (E, capacity, C) buffer (block j to ep rank j); `agree_capacity` is
// the MAX over the group (no dropping: every rank's buffer must be as large
// as the largest load anywhere, as DeepSpeed's all_reduce of new_capacity).
struct MoEExpertParallel {
  int size = 1, rank = 0;
  std::function<Tensor(const Tensor&)> exchange;
  std::function<int64_t(int64_t)> agree_capacity;
};

class MoE : public Module {
 public:
  // Experts start as copies of one GPT-2 MLP init, as DeepSpeed's Experts
  // (deepspeed/moe/experts.py, Experts.__init__: copy.deepcopy(expert) per
  // local expert) deep-copies the expert module it is given: the router's choices, not the
  // init, make them differ.
  MoE(const GPTConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x);  // (B, T, C) -> (B, T, C)

  std::shared_ptr<Linear> router;             // (C, E), no bias: "router.weight"
  std::vector<std::shared_ptr<MLP>> experts;  // "experts.0" ... "experts.(E-1)"

  // l_aux of the forwards since the last take (summed; a scalar of the gates'
  // dtype with its graph), then forgotten. Undefined when none ran.
  Tensor take_aux_loss();
  // The routing of the last forward (for tests and the load table).
  const MoeRouting& last_routing() const { return last_; }
  // The load of the training forwards since the last take (the step line),
  // then reset; total_load() sums every take (the end-of-run table).
  MoELoad take_step_load();
  const MoELoad& total_load() const { return total_; }

  // Collective-free; every rank of the ep group must install the same size.
  void set_expert_parallel(MoEExpertParallel ep);
  const MoEExpertParallel& expert_parallel() const { return ep_; }
  // Experts [first_local_expert(), + local_experts()) run here.
  int64_t local_experts() const { return static_cast<int64_t>(experts.size()) / ep_.size; }
  int64_t first_local_expert() const { return ep_.rank * local_experts(); }

 private:
  // (E, capacity, C) -> (E, capacity, C): the experts on their rows, here or
  // across the ep group.
  Tensor run_experts(const Tensor& buffer);

  MoEConfig moe_;
  MoEExpertParallel ep_;
  MoeRouting last_;
  Tensor aux_;
  MoELoad step_, total_;
};

}  // namespace ms
