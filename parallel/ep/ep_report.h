// What `minispeed train --ep P` prints about expert parallelism: the groups
// (beside the mesh's), the parameters a rank holds (dense beside its E/P
// experts), and the all-to-all bytes measured by the ledger beside the
// formula (parallel/ep/ep_traffic.h) with the gate's exact capacities.
#pragma once
#include <string>

#include "nn/gpt.h"
#include "parallel/comm/ledger.h"
#include "parallel/ep/ep_groups.h"

namespace ms {

// Collective over `dp` (an all_gather of world ranks): the ep and expert-dp
// groups as world ranks, the same text on every rank.
std::string ep_groups_report(Communicator& dp, Communicator& world, const EpLayout& layout);

// "  expert parallelism: dense 34,688 parameters on every rank; experts
//  16,704 per rank = 2 of 4 per MoE layer (33,408 in all over ep 2)".
std::string ep_memory_line(const GPT& model, int ep_size, int ep_rank);

// Collective over groups.ep: each rank's all-to-all bytes within the training
// steps against Σ over MoE layers of 4·(E/P)·(P−1)·capacity·C·4 over the
// capacities the gates used (MoELoad::capacity_slots of the whole run);
// rank 0 of the group gets the table, the others "". `*match` is set on every
// rank of the group.
std::string ep_traffic_report(EpGroups& groups, const StepTraffic& meter, GPT& model,
                              bool* match = nullptr);

}  // namespace ms
