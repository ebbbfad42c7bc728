// The process mesh: the world's ranks arranged as a dp × cp × tp × pp grid,
// and the communicators each kind of parallelism talks on.
//
// Layout (Megatron-LM's default order "tp-cp-ep-dp-pp", parallel_state.py::
// initialize_model_parallel; DeepSpeed's 3D topology is the same without cp):
//     rank = tp_rank + cp_rank·TP + dp_rank·TP·CP + pp_rank·TP·CP·DP
// (tensor-parallel fastest). Why: tensor parallelism all-reduces activations
// in every layer, the most frequent and latency-critical traffic, so its
// groups get consecutive ranks — on a real cluster the GPUs of one node,
// joined by NVLink. Context parallelism exchanges K/V blocks (ring) or
// all-to-alls q/k/v (Ulysses) in every layer too, second only to tp, so it
// comes next. Data parallelism talks once per step; the pipeline only sends
// activations between neighbouring stages, so it tolerates the slowest links.
// With cp = 1 the formula is rank = tp + dp·TP + pp·TP·DP, as before.
//
// Groups (built with Communicator::split, rank within a group = coordinate):
//   dp():    the ranks with my (cp, tp, pp) — the replicas reading different data;
//   cp():    the ranks with my (dp, tp, pp) — one replica's sequence shards;
//   dp_cp(): the ranks with my (tp, pp), rank = cp + dp·CP — gradients are
//            averaged and ZeRO partitions here (Megatron's data-parallel group
//            with_context_parallel=True; DeepSpeed's sequence-data-parallel group);
//            the same group as dp() when cp = 1;
//   tp():    the ranks with my (dp, cp, pp) — a layer's shards live here;
//   pp():    the ranks with my (dp, cp, tp) — one model replica's stages, in
//            order, so in pp() the previous stage is pp_rank()-1 and the next pp_rank()+1.
#pragma once
#include <string>

#include "parallel/comm/communicator.h"

namespace ms {

struct MeshCoord {
  int dp = 0, tp = 0, pp = 0, cp = 0;
};

class Mesh {
 public:
  // Collective over `world` (it splits five communicators). dp*cp*tp*pp must
  // equal world.size(); otherwise an ms::Error names the numbers.
  Mesh(Communicator world, int dp, int tp, int pp, int cp = 1);

  int dp_size() const { return dp_; }
  int tp_size() const { return tp_; }
  int pp_size() const { return pp_; }
  int cp_size() const { return cp_; }
  const MeshCoord& coord() const { return me_; }
  int dp_rank() const { return me_.dp; }
  int tp_rank() const { return me_.tp; }
  int pp_rank() const { return me_.pp; }
  int cp_rank() const { return me_.cp; }
  int rank() const { return world_.rank(); }

  Communicator& world() { return world_; }
  Communicator& dp() { return dp_comm_; }
  Communicator& cp() { return cp_comm_; }
  Communicator& dp_cp() { return dp_cp_comm_; }
  Communicator& tp() { return tp_comm_; }
  Communicator& pp() { return pp_comm_; }

  // The world rank at a coordinate, and the coordinate of a world rank.
  int rank_of(const MeshCoord& c) const;
  MeshCoord coord_of(int world_rank) const;

  // World ranks of my previous / next pipeline stage (same dp, cp and tp), or
  // -1 on the first / last stage.
  int prev_stage_rank() const;
  int next_stage_rank() const;
  bool is_first_stage() const { return me_.pp == 0; }
  bool is_last_stage() const { return me_.pp == pp_ - 1; }

  // The grid, one line per (pp stage, dp replica, cp shard) listing its tp
  // ranks, then this rank's coordinates and groups. Same text on every rank
  // except the last line.
  std::string describe() const;
  // Every group of each dimension larger than 1, the same text on every rank:
  //   mesh: 4 ranks = dp 2 × tp 2 × pp 1 (rank = tp + dp·2 + pp·4)
  //     tp groups [0 1] [2 3] (a layer's shards)
  //     dp groups [0 2] [1 3] (gradients averaged, ZeRO partitions)
  // With cp > 1 the header names cp and the cp and dp×cp groups follow.
  std::string describe_groups() const;

 private:
  Communicator world_;
  int dp_, tp_, pp_, cp_;
  MeshCoord me_;
  Communicator dp_comm_, cp_comm_, dp_cp_comm_, tp_comm_, pp_comm_;
};

}  // namespace ms
