// Mesh: Megatron order (rank = tp + cp*TP + dp*TP*CP + pp*TP*CP*DP) for every
// factorization of the world size, group membership checked through real
// collectives, the pipeline neighbours, and the error for sizes that do not
// multiply out.
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

TEST_CASE("mesh coordinates and groups for every dp×cp×tp×pp factorization", "[mpi][mesh]") {
  Communicator world = Communicator::world();
  const int n = world.size(), r = world.rank();
  for (int cp = 1; cp <= n; ++cp)
    for (int dp = 1; dp <= n; ++dp)
      for (int tp = 1; tp <= n; ++tp) {
        if (n % (cp * dp * tp) != 0) continue;
        const int pp = n / (cp * dp * tp);
        Mesh mesh(world, dp, tp, pp, cp);
        std::vector<int> dpg = members(mesh.dp(), r), tpg = members(mesh.tp(), r),
                         ppg = members(mesh.pp(), r), cpg = members(mesh.cp(), r),
                         dpcpg = members(mesh.dp_cp(), r);
        INFO("dp " << dp << " cp " << cp << " tp " << tp << " pp " << pp << ", rank " << r);
        // Megatron's default order "tp-cp-ep-dp-pp": tp fastest, then cp, dp, pp.
        CHECK(mesh.tp_rank() == r % tp);
        CHECK(mesh.cp_rank() == (r / tp) % cp);
        CHECK(mesh.dp_rank() == (r / (tp * cp)) % dp);
        CHECK(mesh.pp_rank() == r / (tp * cp * dp));
        CHECK(mesh.rank_of(mesh.coord()) == r);
        CHECK(mesh.dp().rank() == mesh.dp_rank());
        CHECK(mesh.cp().rank() == mesh.cp_rank());
        CHECK(mesh.dp_cp().rank() == mesh.cp_rank() + mesh.dp_rank() * cp);
        CHECK(mesh.tp().rank() == mesh.tp_rank());
        CHECK(mesh.pp().rank() == mesh.pp_rank());
        auto at = [&](int d, int c, int t, int p) {
          return t + c * tp + d * tp * cp + p * tp * cp * dp;
        };
        const MeshCoord m = mesh.coord();
        std::vector<int> want_dp, want_cp, want_dpcp, want_tp, want_pp;
        for (int i = 0; i < dp; ++i) want_dp.push_back(at(i, m.cp, m.tp, m.pp));
        for (int i = 0; i < cp; ++i) want_cp.push_back(at(m.dp, i, m.tp, m.pp));
        for (int i = 0; i < dp; ++i)
          for (int j = 0; j < cp; ++j) want_dpcp.push_back(at(i, j, m.tp, m.pp));
        for (int i = 0; i < tp; ++i) want_tp.push_back(at(m.dp, m.cp, i, m.pp));
        for (int i = 0; i < pp; ++i) want_pp.push_back(at(m.dp, m.cp, m.tp, i));
        CHECK(dpg == want_dp);
        CHECK(cpg == want_cp);
        CHECK(dpcpg == want_dpcp);
        CHECK(tpg == want_tp);
        CHECK(ppg == want_pp);
        const int stage = tp * cp * dp;
        CHECK(mesh.prev_stage_rank() == (mesh.pp_rank() > 0 ? r - stage : -1));
        CHECK(mesh.next_stage_rank() == (mesh.pp_rank() < pp - 1 ? r + stage : -1));
        CHECK(mesh.is_first_stage() == (mesh.pp_rank() == 0));
        CHECK(mesh.is_last_stage() == (mesh.pp_rank() == pp - 1));
        for (int q = 0; q < n; ++q) CHECK(mesh.rank_of(mesh.coord_of(q)) == q);
        std::string text = mesh.describe();
        if (cp == 1) {
          CHECK(text.find(str_cat("dp ", dp, " × tp ", tp, " × pp ", pp)) != std::string::npos);
          CHECK(text.find(str_cat("rank ", r, ": dp ", mesh.dp_rank(), " tp")) !=
                std::string::npos);
        } else {
          CHECK(text.find(str_cat("dp ", dp, " × cp ", cp, " × tp ", tp, " × pp ", pp)) !=
                std::string::npos);
          CHECK(text.find(str_cat("rank ", r, ": dp ", mesh.dp_rank(), " cp ", mesh.cp_rank())) !=
                std::string::npos);
        }
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
  // cp between tp and dp (Megatron's "tp-cp-ep-dp-pp"): cp 2 × tp 2.
  Mesh context(world, 1, 2, 1, 2);
  const std::string cp_groups = context.describe_groups();
  INFO(cp_groups);
  CHECK(cp_groups.find("4 ranks = dp 1 × cp 2 × tp 2 × pp 1 (rank = tp + cp·2 + dp·4 + pp·4)") !=
        std::string::npos);
  CHECK(cp_groups.find("tp groups [0 1] [2 3]") != std::string::npos);
  CHECK(cp_groups.find("cp groups [0 2] [1 3] (a replica's sequence shards)") != std::string::npos);
  CHECK(cp_groups.find("dp×cp groups [0 2] [1 3] (gradients averaged, ZeRO partitions)") !=
        std::string::npos);
  Mesh dp_cp(world, 2, 1, 1, 2);
  const std::string dc = dp_cp.describe_groups();
  INFO(dc);
  CHECK(dc.find("cp groups [0 1] [2 3]") != std::string::npos);
  CHECK(dc.find("dp groups [0 2] [1 3] (replicas reading different data)") != std::string::npos);
  CHECK(dc.find("dp×cp groups [0 1 2 3]") != std::string::npos);
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
