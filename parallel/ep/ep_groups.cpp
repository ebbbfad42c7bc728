#include "parallel/ep/ep_groups.h"

#include "tensor/error.h"

namespace ms {

EpLayout::EpLayout(int dp_size, int ep_size) : dp(dp_size), ep(ep_size) {
  MS_CHECK(ep_size >= 1, "--ep must be >= 1, got ", ep_size);
  MS_CHECK(dp_size % ep_size == 0, "--ep ", ep_size, " does not divide the data-parallel size ",
           dp_size,
           " (the ep groups are carved from the dp ranks, as DeepSpeed's: valid ep "
           "sizes divide ",
           dp_size, ")");
}

std::vector<std::vector<int>> EpLayout::ep_groups() const {
  std::vector<std::vector<int>> out(static_cast<size_t>(expert_dp()));
  for (int r = 0; r < dp; ++r) out[static_cast<size_t>(expert_dp_rank(r))].push_back(r);
  return out;
}

std::vector<std::vector<int>> EpLayout::expert_dp_groups() const {
  std::vector<std::vector<int>> out(static_cast<size_t>(ep));
  for (int r = 0; r < dp; ++r) out[static_cast<size_t>(ep_rank(r))].push_back(r);
  return out;
}

namespace {
std::string groups_line(const std::vector<std::vector<int>>& groups,
                        const std::vector<int>& world_of_dp) {
  std::string s;
  for (const auto& g : groups) {
    s += " [";
    for (size_t i = 0; i < g.size(); ++i) {
      if (i) s += ' ';
      s += std::to_string(world_of_dp.at(static_cast<size_t>(g[i])));
    }
    s += "]";
  }
  return s;
}
}  // namespace

std::string EpLayout::describe(const std::vector<int>& world_of_dp) const {
  return "  ep groups" + groups_line(ep_groups(), world_of_dp) +
         " (experts split, dispatch/combine all-to-all)\n  expert-dp groups" +
         groups_line(expert_dp_groups(), world_of_dp) +
         " (same experts: expert gradients averaged)\n";
}

EpGroups::EpGroups(Communicator& dp, int ep_size)
    : layout(dp.size(), ep_size),
      ep(dp.split(layout.expert_dp_rank(dp.rank()), dp.rank())),
      expert_dp(dp.split(layout.ep_rank(dp.rank()), dp.rank())) {}

}  // namespace ms
