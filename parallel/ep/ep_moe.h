// The MoE layers under expert parallelism (DeepSpeed's MOELayer with its
// _AllToAll, deepspeed/moe/sharded_moe.py): each rank runs E/P experts, and
// the (E, capacity, C) buffers cross the ep group twice per forward
// (dispatch, combine) and twice per backward (docs/architecture.md "Expert
// parallelism").
#pragma once
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "parallel/ep/ep_groups.h"

namespace ms {

// Every MoE layer of `model` runs its local experts over `groups.ep`.
// Throws ms::Error naming E and P when P does not divide E. Collective-free.
void install_expert_parallel(GPT& model, EpGroups& groups);

// Back to one process: every MoE layer runs all E experts itself (after
// gather_experts, for rank 0 alone to sample). install_expert_parallel again
// before the next collective forward.
void uninstall_expert_parallel(GPT& model);

// Per model.parameters() index: an expert's parameter ("h.N.mlp.experts.e.")
// and whether this rank holds it (e in its E/P block).
struct ExpertParams {
  std::vector<bool> expert, local;
  int64_t local_numel = 0, dense_numel = 0, expert_numel = 0;  // expert_numel: all E
};
ExpertParams expert_params(const GPT& model, int ep_size, int ep_rank);
// The expert index in an "h.N.mlp.experts.e.…" name, or -1.
int64_t expert_of(const std::string& name);

// Every rank of the ep group receives the experts it does not hold from
// their holders (one broadcast per expert tensor), so the model is whole: for
// --save-weights, sampling and checkpoints. Collective over groups.ep.
void gather_experts(GPT& model, EpGroups& groups);

}  // namespace ms
