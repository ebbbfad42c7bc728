// Mesh: Megatron-order rank layout and the dp/tp/pp communicators (mesh.h).
#include "parallel/mesh.h"

#include <sstream>

namespace ms {

namespace {

// Validates the sizes before any communicator is split (every rank computes
// the same verdict, so a bad layout fails everywhere, not in a collective).
const Communicator& checked(const Communicator& world, int dp, int tp, int pp) {
  MS_CHECK(dp >= 1 && tp >= 1 && pp >= 1, "mesh: sizes must be >= 1, got dp ", dp, " tp ", tp,
           " pp ", pp);
  MS_CHECK(int64_t(dp) * tp * pp == world.size(), "mesh: dp ", dp, " × tp ", tp, " × pp ", pp,
           " = ", int64_t(dp) * tp * pp, " but the world has ", world.size(), " ranks");
  return world;
}

MeshCoord coord_in(int rank, int dp, int tp) {
  return MeshCoord{(rank / tp) % dp, rank % tp, rank / (tp * dp)};
}

std::string list(const std::vector<int>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? " " : "") << v[i];
  os << "]";
  return os.str();
}

}  // namespace

// Split colors: a group is everything with the other two coordinates fixed;
// the key (my coordinate along the group) makes group rank = that coordinate.
Mesh::Mesh(Communicator world, int dp, int tp, int pp)
    : world_(checked(world, dp, tp, pp)),
      dp_(dp),
      tp_(tp),
      pp_(pp),
      me_(coord_in(world_.rank(), dp, tp)),
      dp_comm_(world_.split(me_.tp + me_.pp * tp, me_.dp)),
      tp_comm_(world_.split(me_.dp + me_.pp * dp, me_.tp)),
      pp_comm_(world_.split(me_.tp + me_.dp * tp, me_.pp)) {
  MS_ASSERT(rank_of(me_) == world_.rank(), "mesh coordinates do not round-trip");
}

int Mesh::rank_of(const MeshCoord& c) const {
  MS_CHECK(c.dp >= 0 && c.dp < dp_ && c.tp >= 0 && c.tp < tp_ && c.pp >= 0 && c.pp < pp_,
           "mesh: coordinate (dp ", c.dp, ", tp ", c.tp, ", pp ", c.pp, ") is outside dp ", dp_,
           " × tp ", tp_, " × pp ", pp_);
  return c.tp + c.dp * tp_ + c.pp * tp_ * dp_;
}

MeshCoord Mesh::coord_of(int world_rank) const {
  MS_CHECK(world_rank >= 0 && world_rank < world_.size(), "mesh: rank ", world_rank,
           " is not in the ", world_.size(), "-rank world");
  return coord_in(world_rank, dp_, tp_);
}

int Mesh::prev_stage_rank() const {
  return is_first_stage() ? -1 : rank_of({me_.dp, me_.tp, me_.pp - 1});
}

int Mesh::next_stage_rank() const {
  return is_last_stage() ? -1 : rank_of({me_.dp, me_.tp, me_.pp + 1});
}

std::string Mesh::describe_groups() const {
  std::ostringstream os;
  os << "mesh: " << world_.size() << " ranks = dp " << dp_ << " × tp " << tp_ << " × pp " << pp_
     << " (rank = tp + dp·" << tp_ << " + pp·" << tp_ * dp_ << ")\n";
  // The groups of one dimension: every rank with the same other two coordinates.
  auto groups = [&](const char* name, int size, const char* role, auto coord) {
    if (size == 1) return;
    os << "  " << name << " groups";
    for (int q = 0; q < world_.size(); ++q) {
      if (coord(coord_of(q)) != 0) continue;  // q leads its group
      std::vector<int> ranks;
      for (int i = 0; i < size; ++i) {
        MeshCoord c = coord_of(q);
        coord(c) = i;
        ranks.push_back(rank_of(c));
      }
      os << " " << list(ranks);
    }
    os << " (" << role << ")\n";
  };
  groups(
      "tp", tp_, "a layer's shards", [](auto&& c) -> auto& { return c.tp; });
  groups(
      "dp", dp_, "gradients averaged, ZeRO partitions", [](auto&& c) -> auto& { return c.dp; });
  groups(
      "pp", pp_, "a replica's stages, in order", [](auto&& c) -> auto& { return c.pp; });
  return os.str();
}

std::string Mesh::describe() const {
  std::ostringstream os;
  os << "mesh: " << world_.size() << " ranks = dp " << dp_ << " × tp " << tp_ << " × pp " << pp_
     << "   (rank = tp + dp*" << tp_ << " + pp*" << tp_ * dp_ << ")\n";
  for (int p = 0; p < pp_; ++p) {
    for (int d = 0; d < dp_; ++d) {
      std::vector<int> ranks;
      for (int t = 0; t < tp_; ++t) ranks.push_back(rank_of({d, t, p}));
      os << "  pp stage " << p << "  dp replica " << d << "  tp group " << list(ranks) << "\n";
    }
  }
  std::vector<int> dpg, tpg, ppg;
  for (int d = 0; d < dp_; ++d) dpg.push_back(rank_of({d, me_.tp, me_.pp}));
  for (int t = 0; t < tp_; ++t) tpg.push_back(rank_of({me_.dp, t, me_.pp}));
  for (int p = 0; p < pp_; ++p) ppg.push_back(rank_of({me_.dp, me_.tp, p}));
  os << "  rank " << rank() << ": dp " << me_.dp << " tp " << me_.tp << " pp " << me_.pp
     << "; dp group " << list(dpg) << ", tp group " << list(tpg) << ", pp group " << list(ppg)
     << ", prev stage " << prev_stage_rank() << ", next stage " << next_stage_rank() << "\n";
  return os.str();
}

}  // namespace ms
