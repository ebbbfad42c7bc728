// Lesson 10: 3D parallelism. You lay out a world of ranks as a tp × dp × pp
// mesh in Megatron's order — which rank sits at which coordinate, which ranks
// form each group — and split the world communicator into this rank's group;
// check.cpp compares with the library's ms::Mesh on 8 ranks (and the pure
// functions on 16), runs a collective on every group you built, and measures
// what each dimension moves.
#pragma once
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/mesh.h"

namespace lesson10 {

enum class Dim { TP, DP, PP };

// Megatron's layout, tensor-parallel fastest, pipeline slowest:
//     rank = tp + dp·TP + pp·TP·DP
// The coordinate of world rank `rank` (0 <= rank < tp·dp·pp) of a mesh of
// sizes tp, dp, pp (ms::MeshCoord is {dp, tp, pp}).
ms::MeshCoord coord_of(int rank, int tp, int dp, int pp);

// Every group of dimension `which` on a world of `world` ranks: the ranks that
// share the other two coordinates. Each group lists its world ranks in the
// order of their coordinate along `which` (so group rank i = coordinate i: in
// a pp group, stage 0 first); the groups themselves may come in any order.
// Every rank is in exactly one group of each dimension. A dimension of size 1
// gives `world` groups of one rank.
// tp·dp·pp != world is the user's error: throw ms::Error (MS_CHECK) naming all
// four numbers, e.g. "tp 4 × dp 3 × pp 5 = 60, but the world has 16 ranks".
// Sizes below 1 are errors too.
std::vector<std::vector<int>> groups(int world, int tp, int dp, int pp, Dim which);

// Collective over `world` (every rank calls it with the same arguments): this
// rank's communicator of dimension `which`, made with world.split(color, key).
// Its rank must equal this rank's coordinate along `which`, its size the size
// of that dimension, its members the group groups() lists for this rank.
ms::Communicator split_group(ms::Communicator& world, int tp, int dp, int pp, Dim which);

}  // namespace lesson10
