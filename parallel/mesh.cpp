// Mesh: Megatron-order rank layout and the dp/cp/tp/pp communicators (mesh.h).
#include "parallel/mesh.h"

#include <algorithm>
#include <sstream>

namespace ms {

namespace {

// Validates the sizes before any communicator is split (every rank computes
// the same verdict, so a bad layout fails everywhere, not in a collective).
const Communicator& checked(const Communicator& world, int dp, int tp, int pp, int cp) {
  MS_CHECK(dp >= 1 && tp >= 1 && pp >= 1 && cp >= 1, "mesh: sizes must be >= 1, got dp ", dp,
           " cp ", cp, " tp ", tp, " pp ", pp);
  const int64_t n = int64_t(dp) * cp * tp * pp;
  MS_CHECK(n == world.size(), "mesh: dp ", dp, cp > 1 ? str_cat(" × cp ", cp) : std::string(),
           " × tp ", tp, " × pp ", pp, " = ", n, " but the world has ", world.size(), " ranks");
  return world;
}

// rank = tp + cp·TP + dp·TP·CP + pp·TP·CP·DP (mesh.h).
MeshCoord coord_in(int rank, int dp, int tp, int cp) {
  return MeshCoord{(rank / (tp * cp)) % dp, rank % tp, rank / (tp * cp * dp), (rank / tp) % cp};
}

std::string list(const std::vector<int>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? " " : "") << v[i];
  os << "]";
  return os.str();
}

}  // namespace

// Split colors: a group is everything with the other coordinates fixed; the
// key (my coordinate along the group) makes group rank = that coordinate.
Mesh::Mesh(Communicator world, int dp, int tp, int pp, int cp)
    : world_(checked(world, dp, tp, pp, cp)),
      dp_(dp),
      tp_(tp),
      pp_(pp),
      cp_(cp),
      me_(coord_in(world_.rank(), dp, tp, cp)),
      dp_comm_(world_.split(me_.tp + me_.cp * tp + me_.pp * tp * cp, me_.dp)),
      cp_comm_(world_.split(me_.tp + me_.dp * tp + me_.pp * tp * dp, me_.cp)),
      dp_cp_comm_(world_.split(me_.tp + me_.pp * tp, me_.cp + me_.dp * cp)),
      tp_comm_(world_.split(me_.cp + me_.dp * cp + me_.pp * cp * dp, me_.tp)),
      pp_comm_(world_.split(me_.tp + me_.cp * tp + me_.dp * tp * cp, me_.pp)) {
  MS_ASSERT(rank_of(me_) == world_.rank(), "mesh coordinates do not round-trip");
}

int Mesh::rank_of(const MeshCoord& c) const {
  MS_CHECK(c.dp >= 0 && c.dp < dp_ && c.tp >= 0 && c.tp < tp_ && c.pp >= 0 && c.pp < pp_ &&
               c.cp >= 0 && c.cp < cp_,
           "mesh: coordinate (dp ", c.dp, ", cp ", c.cp, ", tp ", c.tp, ", pp ", c.pp,
           ") is outside dp ", dp_, " × cp ", cp_, " × tp ", tp_, " × pp ", pp_);
  return c.tp + c.cp * tp_ + c.dp * tp_ * cp_ + c.pp * tp_ * cp_ * dp_;
}

MeshCoord Mesh::coord_of(int world_rank) const {
  MS_CHECK(world_rank >= 0 && world_rank < world_.size(), "mesh: rank ", world_rank,
           " is not in the ", world_.size(), "-rank world");
  return coord_in(world_rank, dp_, tp_, cp_);
}

int Mesh::prev_stage_rank() const {
  return is_first_stage() ? -1 : rank_of({me_.dp, me_.tp, me_.pp - 1, me_.cp});
}

int Mesh::next_stage_rank() const {
  return is_last_stage() ? -1 : rank_of({me_.dp, me_.tp, me_.pp + 1, me_.cp});
}

std::string Mesh::describe_groups() const {
  std::ostringstream os;
  if (cp_ == 1)
    os << "mesh: " << world_.size() << " ranks = dp " << dp_ << " × tp " << tp_ << " × pp " << pp_
       << " (rank = tp + dp·" << tp_ << " + pp·" << tp_ * dp_ << ")\n";
  else
    os << "mesh: " << world_.size() << " ranks = dp " << dp_ << " × cp " << cp_ << " × tp " << tp_
       << " × pp " << pp_ << " (rank = tp + cp·" << tp_ << " + dp·" << tp_ * cp_ << " + pp·"
       << tp_ * cp_ * dp_ << ")\n";
  // The groups of some dimensions: every rank with the same other coordinates,
  // listed in world-rank order (which is the group's rank order).
  auto groups = [&](const char* name, const char* role, auto in_group) {
    os << "  " << name << " groups";
    std::vector<bool> listed(static_cast<size_t>(world_.size()), false);
    for (int q = 0; q < world_.size(); ++q) {
      if (listed[static_cast<size_t>(q)]) continue;
      std::vector<int> ranks;
      for (int o = q; o < world_.size(); ++o)
        if (in_group(coord_of(q), coord_of(o))) {
          ranks.push_back(o);
          listed[static_cast<size_t>(o)] = true;
        }
      os << " " << list(ranks);
    }
    os << " (" << role << ")\n";
  };
  auto same = [](std::initializer_list<int> a, std::initializer_list<int> b) {
    return std::equal(a.begin(), a.end(), b.begin());
  };
  if (tp_ > 1)
    groups("tp", "a layer's shards", [&](const MeshCoord& a, const MeshCoord& b) {
      return same({a.dp, a.cp, a.pp}, {b.dp, b.cp, b.pp});
    });
  if (cp_ > 1)
    groups("cp", "a replica's sequence shards", [&](const MeshCoord& a, const MeshCoord& b) {
      return same({a.dp, a.tp, a.pp}, {b.dp, b.tp, b.pp});
    });
  if (dp_ > 1)
    groups("dp",
           cp_ > 1 ? "replicas reading different data" : "gradients averaged, ZeRO partitions",
           [&](const MeshCoord& a, const MeshCoord& b) {
             return same({a.cp, a.tp, a.pp}, {b.cp, b.tp, b.pp});
           });
  if (cp_ > 1)
    groups("dp×cp", "gradients averaged, ZeRO partitions",
           [&](const MeshCoord& a, const MeshCoord& b) {
             return same({a.tp, a.pp}, {b.tp, b.pp});
           });
  if (pp_ > 1)
    groups("pp", "a replica's stages, in order", [&](const MeshCoord& a, const MeshCoord& b) {
      return same({a.dp, a.cp, a.tp}, {b.dp, b.cp, b.tp});
    });
  return os.str();
}

std::string Mesh::describe() const {
  std::ostringstream os;
  if (cp_ == 1)
    os << "mesh: " << world_.size() << " ranks = dp " << dp_ << " × tp " << tp_ << " × pp " << pp_
       << "   (rank = tp + dp*" << tp_ << " + pp*" << tp_ * dp_ << ")\n";
  else
    os << "mesh: " << world_.size() << " ranks = dp " << dp_ << " × cp " << cp_ << " × tp " << tp_
       << " × pp " << pp_ << "   (rank = tp + cp*" << tp_ << " + dp*" << tp_ * cp_ << " + pp*"
       << tp_ * cp_ * dp_ << ")\n";
  for (int p = 0; p < pp_; ++p) {
    for (int d = 0; d < dp_; ++d) {
      for (int s = 0; s < cp_; ++s) {
        std::vector<int> ranks;
        for (int t = 0; t < tp_; ++t) ranks.push_back(rank_of({d, t, p, s}));
        os << "  pp stage " << p << "  dp replica " << d;
        if (cp_ > 1) os << "  cp shard " << s;
        os << "  tp group " << list(ranks) << "\n";
      }
    }
  }
  std::vector<int> dpg, cpg, tpg, ppg;
  for (int d = 0; d < dp_; ++d) dpg.push_back(rank_of({d, me_.tp, me_.pp, me_.cp}));
  for (int s = 0; s < cp_; ++s) cpg.push_back(rank_of({me_.dp, me_.tp, me_.pp, s}));
  for (int t = 0; t < tp_; ++t) tpg.push_back(rank_of({me_.dp, t, me_.pp, me_.cp}));
  for (int p = 0; p < pp_; ++p) ppg.push_back(rank_of({me_.dp, me_.tp, p, me_.cp}));
  os << "  rank " << rank() << ": dp " << me_.dp;
  if (cp_ > 1) os << " cp " << me_.cp;
  os << " tp " << me_.tp << " pp " << me_.pp << "; dp group " << list(dpg);
  if (cp_ > 1) os << ", cp group " << list(cpg);
  os << ", tp group " << list(tpg) << ", pp group " << list(ppg) << ", prev stage "
     << prev_stage_rank() << ", next stage " << next_stage_rank() << "\n";
  return os.str();
}

}  // namespace ms
