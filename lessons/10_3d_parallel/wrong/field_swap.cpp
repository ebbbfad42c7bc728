// expect: stores two of them in each other's fields: the tp coordinate lands in .dp and the dp coordinate in .tp
// expect: ms::MeshCoord is {dp, tp, pp}
// Lesson 10, deliberately wrong: reads ms::MeshCoord as {tp, dp, pp} (it is {dp, tp, pp}), so the tp and dp
// coordinates land in each other's fields. On the article's 2 × 2 × 2 that looks exactly like dp fastest.
#include "lessons/10_3d_parallel/lesson.h"
#include "tensor/error.h"

namespace lesson10 {

namespace {

int rank_at(const ms::MeshCoord& c, int tp, int dp) {
  return c.tp + c.dp * tp + c.pp * tp * dp;
}
// The coordinate along `which`, by reference, so a group can be walked.
int& along(ms::MeshCoord& c, Dim which) {
  return which == Dim::TP ? c.tp : which == Dim::DP ? c.dp : c.pp;
}
int size_of(Dim which, int tp, int dp, int pp) {
  return which == Dim::TP ? tp : which == Dim::DP ? dp : pp;
}

}  // namespace

ms::MeshCoord coord_of(int rank, int tp, int dp, int pp) {
  (void)pp;  // the slowest coordinate is whatever is left: rank / (tp·dp)
  // tp varies fastest: consecutive ranks (one node's GPUs) share dp and pp.
  return ms::MeshCoord{rank % tp, (rank / tp) % dp, rank / (tp * dp)};  // BUG: {tp, dp, pp} order
}

std::vector<std::vector<int>> groups(int world, int tp, int dp, int pp, Dim which) {
  MS_CHECK(tp >= 1 && dp >= 1 && pp >= 1, "mesh sizes must be >= 1: tp ", tp, ", dp ", dp, ", pp ",
           pp);
  MS_CHECK(int64_t(tp) * dp * pp == world, "tp ", tp, " × dp ", dp, " × pp ", pp, " = ",
           int64_t(tp) * dp * pp, ", but the world has ", world, " ranks");
  const int n = size_of(which, tp, dp, pp);
  std::vector<std::vector<int>> out;
  for (int r = 0; r < world; ++r) {
    ms::MeshCoord c = coord_of(r, tp, dp, pp);
    if (along(c, which) != 0) continue;  // r is coordinate 0 of its group: it leads it
    std::vector<int> g;
    for (int i = 0; i < n; ++i) {
      along(c, which) = i;
      g.push_back(rank_at(c, tp, dp));
    }
    out.push_back(g);
  }
  return out;
}

ms::Communicator split_group(ms::Communicator& world, int tp, int dp, int pp, Dim which) {
  const ms::MeshCoord c = coord_of(world.rank(), tp, dp, pp);
  // color: what the members share (the other two coordinates, numbered);
  // key: my place in the group, so group rank = my coordinate along `which`.
  switch (which) {
    case Dim::TP:
      return world.split(c.dp + c.pp * dp, c.tp);
    case Dim::DP:
      return world.split(c.tp + c.pp * tp, c.dp);
    case Dim::PP:
      break;
  }
  return world.split(c.tp + c.dp * tp, c.pp);
}

}  // namespace lesson10
