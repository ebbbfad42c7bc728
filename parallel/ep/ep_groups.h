// Expert parallelism's two groups, carved from the data-parallel ranks as
// DeepSpeed's deepspeed/utils/groups.py (_create_expert_and_data_parallel,
// _get_expert_parallel_ranks) and Megatron's expert-parallel ranks do. For
// dp ranks 0..D-1 and ep size P (P divides D):
//   ep groups           P consecutive dp ranks: [0..P-1] [P..2P-1] ...
//                       (the E experts spread over them; the all-to-alls);
//   expert-dp groups    the dp ranks with the same dp_rank % P: [0 P 2P ..]
//                       (size D/P, the ranks holding the same experts: their
//                       gradients are averaged here).
// DeepSpeed's own example (tests/unit/utils/test_get_expert_parallel_ranks.py,
// world 16, mp 2, ep 4): data_parallel_group [0,2,4,...,14] gives
// expert_parallel_group [0,2,4,6] [8,10,12,14] and expert_data_parallel_group
// [0,8] [2,10] [4,12] [6,14] — consecutive in the dp group, then strided.
// The mesh is not reshaped: both are splits of Mesh::dp() (docs/architecture.md
// "Expert parallelism").
#pragma once
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"

namespace ms {

// The groups as dp ranks, for describing and testing (no communicator).
struct EpLayout {
  int dp = 1, ep = 1;
  // Throws ms::Error naming both sizes when ep does not divide dp.
  EpLayout(int dp_size, int ep_size);
  int expert_dp() const { return dp / ep; }
  int ep_rank(int dp_rank) const { return dp_rank % ep; }
  int expert_dp_rank(int dp_rank) const { return dp_rank / ep; }
  std::vector<std::vector<int>> ep_groups() const;         // in dp ranks
  std::vector<std::vector<int>> expert_dp_groups() const;  // in dp ranks
  // "ep groups [0 1] [2 3] (experts split, all-to-all)" and the expert-dp
  // line, each group as world ranks given the dp group's world ranks.
  std::string describe(const std::vector<int>& world_of_dp) const;
};

struct EpGroups {
  EpLayout layout;
  Communicator ep;         // my P consecutive dp ranks
  Communicator expert_dp;  // the dp ranks holding my experts
  // Collective over dp (two splits).
  EpGroups(Communicator& dp, int ep_size);
};

}  // namespace ms
