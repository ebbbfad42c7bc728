// The process mesh: the world's ranks arranged as a dp × tp × pp grid, and the
// communicators each kind of parallelism talks on.
//
// Layout (Megatron-LM's, which DeepSpeed's 3D parallelism also uses):
//     rank = tp_rank + dp_rank * TP + pp_rank * TP * DP     (tensor-parallel fastest)
// Why tp fastest: tensor parallelism all-reduces activations in every layer,
// the most frequent and latency-critical traffic, so its groups get
// consecutive ranks — which on a real cluster are the GPUs of one node, joined
// by NVLink. Data parallelism talks once per step; the pipeline only sends
// activations between neighbouring stages, so it tolerates the slowest links.
//
// Groups (built with Communicator::split, rank within a group = coordinate):
//   dp(): the ranks with my (tp, pp) — gradients are averaged here;
//   tp(): the ranks with my (dp, pp) — a layer's shards live here;
//   pp(): the ranks with my (dp, tp) — one model replica's stages, in order,
//         so in pp() the previous stage is pp_rank()-1 and the next pp_rank()+1.
#pragma once
#include <string>

#include "parallel/comm/communicator.h"

namespace ms {

struct MeshCoord {
  int dp = 0, tp = 0, pp = 0;
};

class Mesh {
 public:
  // Collective over `world` (it splits three communicators). dp*tp*pp must
  // equal world.size(); otherwise an ms::Error names the numbers.
  Mesh(Communicator world, int dp, int tp, int pp);

  int dp_size() const { return dp_; }
  int tp_size() const { return tp_; }
  int pp_size() const { return pp_; }
  const MeshCoord& coord() const { return me_; }
  int dp_rank() const { return me_.dp; }
  int tp_rank() const { return me_.tp; }
  int pp_rank() const { return me_.pp; }
  int rank() const { return world_.rank(); }

  Communicator& world() { return world_; }
  Communicator& dp() { return dp_comm_; }
  Communicator& tp() { return tp_comm_; }
  Communicator& pp() { return pp_comm_; }

  // The world rank at a coordinate, and the coordinate of a world rank.
  int rank_of(const MeshCoord& c) const;
  MeshCoord coord_of(int world_rank) const;

  // World ranks of my previous / next pipeline stage (same dp and tp), or -1
  // on the first / last stage.
  int prev_stage_rank() const;
  int next_stage_rank() const;
  bool is_first_stage() const { return me_.pp == 0; }
  bool is_last_stage() const { return me_.pp == pp_ - 1; }

  // The grid, one line per (pp stage, dp replica) listing its tp ranks, then
  // this rank's coordinates and groups. Same text on every rank except the
  // last line.
  std::string describe() const;
  // Every group of each dimension larger than 1, the same text on every rank:
  //   mesh: 4 ranks = dp 2 × tp 2 × pp 1 (rank = tp + dp·2 + pp·4)
  //     tp groups [0 1] [2 3] (a layer's shards)
  //     dp groups [0 2] [1 3] (gradients averaged, ZeRO partitions)
  std::string describe_groups() const;

 private:
  Communicator world_;
  int dp_, tp_, pp_;
  MeshCoord me_;
  Communicator dp_comm_, tp_comm_, pp_comm_;
};

}  // namespace ms
