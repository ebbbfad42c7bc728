// Lesson 10 exercise: lay out the 3D mesh, then run `make lesson L=10 TRY=1`
// (8 ranks: the article's tp 2 × dp 2 × pp 2, and more layouts).
//
// Tools: ms::MeshCoord {dp, tp, pp} (parallel/mesh.h); MS_CHECK(cond, "text ",
// value, ...) throws ms::Error with the pieces joined (tensor/error.h);
// world.rank(), world.size(), world.split(color, key) (parallel/comm/communicator.h):
// ranks with the same color form one communicator, ordered by key.
#include "lessons/10_3d_parallel/lesson.h"
#include "tensor/error.h"

namespace lesson10 {

ms::MeshCoord coord_of(int rank, int tp, int dp, int pp) {
  // TODO 1: Megatron's order, rank = tp + dp·TP + pp·TP·DP. Which coordinate
  //         varies fastest, and why (README question 2)?
  (void)rank, (void)tp, (void)dp, (void)pp;
  throw ms::Error("TODO: write coord_of in lessons/10_3d_parallel/exercise.cpp");
}

std::vector<std::vector<int>> groups(int world, int tp, int dp, int pp, Dim which) {
  // TODO 2: first the sizes (lesson.h: the error names all four numbers); then
  //         every group of `which`: the ranks sharing the other two coordinates,
  //         in coordinate order.
  (void)world, (void)tp, (void)dp, (void)pp, (void)which;
  throw ms::Error("TODO: write groups in lessons/10_3d_parallel/exercise.cpp");
}

ms::Communicator split_group(ms::Communicator& world, int tp, int dp, int pp, Dim which) {
  // TODO 3: world.split(color, key). What must the members of a group share
  //         (color), and what orders them (key)?
  (void)world, (void)tp, (void)dp, (void)pp, (void)which;
  throw ms::Error("TODO: write split_group in lessons/10_3d_parallel/exercise.cpp");
}

}  // namespace lesson10
