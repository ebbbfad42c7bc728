// Mesh: Megatron order (rank = tp + dp*TP + pp*TP*DP) for every factorization
// of the world size, group membership checked through real collectives, the
// pipeline neighbours, and the error for sizes that do not multiply out.
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "parallel/mesh.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

// The world ranks of one group, gathered over the group's own communicator.
std::vector<int> members(Communicator& group, int world_rank) {
  Tensor me = from_vector(std::vector<int32_t>{world_rank}, {1});
  Tensor all = Tensor::empty({group.size()}, DType::I32);
  group.all_gather(me, all);
  return std::vector<int>(all.host_data<int32_t>(), all.host_data<int32_t>() + group.size());
}

}  // namespace

TEST_CASE("mesh coordinates and groups for every dp×tp×pp factorization", "[mpi][mesh]") {
  Communicator world = Communicator::world();
  const int n = world.size(), r = world.rank();
  for (int dp = 1; dp <= n; ++dp)
    for (int tp = 1; tp <= n; ++tp) {
      if (n % (dp * tp) != 0) continue;
      const int pp = n / (dp * tp);
      Mesh mesh(world, dp, tp, pp);
      std::vector<int> dpg = members(mesh.dp(), r), tpg = members(mesh.tp(), r),
                       ppg = members(mesh.pp(), r);
      INFO("dp " << dp << " tp " << tp << " pp " << pp << ", rank " << r);
      CHECK(mesh.tp_rank() == r % tp);
      CHECK(mesh.dp_rank() == (r / tp) % dp);
      CHECK(mesh.pp_rank() == r / (tp * dp));
      CHECK(mesh.rank_of(mesh.coord()) == r);
      CHECK(mesh.dp().rank() == mesh.dp_rank());
      CHECK(mesh.tp().rank() == mesh.tp_rank());
      CHECK(mesh.pp().rank() == mesh.pp_rank());
      std::vector<int> want_dp, want_tp, want_pp;
      for (int i = 0; i < dp; ++i)
        want_dp.push_back(mesh.tp_rank() + i * tp + mesh.pp_rank() * tp * dp);
      for (int i = 0; i < tp; ++i)
        want_tp.push_back(i + mesh.dp_rank() * tp + mesh.pp_rank() * tp * dp);
      for (int i = 0; i < pp; ++i)
        want_pp.push_back(mesh.tp_rank() + mesh.dp_rank() * tp + i * tp * dp);
      CHECK(dpg == want_dp);
      CHECK(tpg == want_tp);
      CHECK(ppg == want_pp);
      CHECK(mesh.prev_stage_rank() == (mesh.pp_rank() > 0 ? r - tp * dp : -1));
      CHECK(mesh.next_stage_rank() == (mesh.pp_rank() < pp - 1 ? r + tp * dp : -1));
      CHECK(mesh.is_first_stage() == (mesh.pp_rank() == 0));
      CHECK(mesh.is_last_stage() == (mesh.pp_rank() == pp - 1));
      for (int q = 0; q < n; ++q) CHECK(mesh.rank_of(mesh.coord_of(q)) == q);
      std::string text = mesh.describe();
      CHECK(text.find(str_cat("dp ", dp, " × tp ", tp, " × pp ", pp)) != std::string::npos);
      CHECK(text.find(str_cat("rank ", r, ": dp ", mesh.dp_rank())) != std::string::npos);
    }
}

TEST_CASE("mesh describe() draws the grid", "[mpi][mesh]") {
  Communicator world = Communicator::world();
  if (world.size() != 4) return;
  Mesh mesh(world, 2, 2, 1);
  std::string text = mesh.describe();
  INFO(text);
  CHECK(text.find("pp stage 0  dp replica 1  tp group [2 3]") != std::string::npos);
  const std::string groups = mesh.describe_groups();
  INFO(groups);
  CHECK(groups.find("tp groups [0 1] [2 3]") != std::string::npos);
  CHECK(groups.find("dp groups [0 2] [1 3]") != std::string::npos);
  CHECK(groups.find("pp groups") == std::string::npos);  // pp = 1: no groups to show
  Mesh pipes(world, 1, 2, 2);
  CHECK(pipes.describe_groups().find("pp groups [0 2] [1 3]") != std::string::npos);
}

TEST_CASE("mesh sizes that do not multiply to the world size are an error", "[mpi][mesh]") {
  Communicator world = Communicator::world();
  const int n = world.size();
  const int dp = n == 8 ? 3 : 2;
  std::string err;
  try {
    Mesh bad(world, dp, 2, 2);
  } catch (const Error& e) {
    err = e.what();
  }
  CHECK(err ==
        str_cat("mesh: dp ", dp, " × tp 2 × pp 2 = ", dp * 4, " but the world has ", n, " ranks"));
  err.clear();
  try {
    Mesh bad(world, 0, n, 1);
  } catch (const Error& e) {
    err = e.what();
  }
  CHECK(err.find("must be >= 1") != std::string::npos);
}
