// Overflow agreement (parallel/comm/overflow.h): ONE rank alone finds an inf
// (or NaN) in its gradients and every rank decides to skip the step, for every
// dp × tp × pp layout of the world and every choice of that rank; the ledger
// shows one MAX all-reduce of one element per group of 2+ ranks (none on a
// 1-rank group) and nothing else. Then
// loss scalers fed the agreed flags stay identical on every rank while the
// local flags differ. Runs at 2 and 4 ranks.
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "optim/loss_scaler.h"
#include "parallel/comm/overflow.h"
#include "parallel/mesh.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

// A rank's gradients; `bad` puts one non-finite value in the last tensor,
// in a dtype that varies with `kind` so every storage type is crossed.
std::vector<Tensor> grads(bool bad, int kind) {
  const DType dtypes[] = {DType::F32, DType::BF16, DType::F16, DType::F64};
  const double values[] = {std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()};
  std::vector<double> v(10, 0.25);
  if (bad) v[7] = values[kind % 3];
  return {full({4, 3}, 1.0), from_vector(v, {10}, dtypes[kind % 4])};
}

// Every rank's value of x, in rank order.
std::vector<double> gather(Communicator& world, double x) {
  Tensor me = from_vector({x}, {1}, DType::F64), all = Tensor::empty({world.size()}, DType::F64);
  world.all_gather(me, all);
  return all.to_vector();
}

// What `group` moved in one call of agree_on_overflow: one MAX all-reduce of
// one i32, nothing else — and nothing at all on a 1-rank group, which issues
// no collective (communicator.h).
void check_one_flag_all_reduce(const Traffic& d, const char* group, int group_size) {
  INFO("group " << group << " of " << group_size << " rank(s): " << d.describe());
  const int64_t calls = group_size > 1 ? 1 : 0;
  CHECK(d[CommOp::AllReduce].calls == calls);
  CHECK(d[CommOp::AllReduce].payload == 4 * calls);  // one i32 element
  CHECK(d.total().calls == calls);
}

}  // namespace

TEST_CASE("overflow: one rank alone sees an inf and every rank skips, on every layout",
          "[mpi][overflow]") {
  Communicator world = Communicator::world();
  const int n = world.size(), r = world.rank();
  for (int dp = 1; dp <= n; ++dp)
    for (int tp = 1; tp <= n; ++tp) {
      if (n % (dp * tp) != 0) continue;
      const int pp = n / (dp * tp);
      Mesh mesh(world, dp, tp, pp);
      for (int bad_rank = -1; bad_rank < n; ++bad_rank) {  // -1: nobody overflows
        INFO("dp " << dp << " tp " << tp << " pp " << pp << ", overflow on rank " << bad_rank
                   << ", this is rank " << r);
        const bool local = has_overflow(grads(r == bad_rank, bad_rank + 1));
        CHECK(local == (r == bad_rank));
        const Traffic dp0 = mesh.dp().traffic(), tp0 = mesh.tp().traffic(),
                      pp0 = mesh.pp().traffic(), w0 = world.traffic();
        const bool skip = agree_on_overflow(local, {&mesh.dp(), &mesh.tp(), &mesh.pp()});
        check_one_flag_all_reduce(mesh.dp().traffic() - dp0, "dp", dp);
        check_one_flag_all_reduce(mesh.tp().traffic() - tp0, "tp", tp);
        check_one_flag_all_reduce(mesh.pp().traffic() - pp0, "pp", pp);
        CHECK((world.traffic() - w0).total().calls == 0);
        CHECK(skip == (bad_rank >= 0));
        // And each rank's answer equals every other's (not only the expected one).
        const std::vector<double> all = gather(world, skip ? 1 : 0);
        for (double a : all) CHECK(a == all[0]);
      }
    }
}

TEST_CASE("overflow: absent groups are skipped; one group alone agrees over itself",
          "[mpi][overflow]") {
  Communicator world = Communicator::world();
  const Traffic w0 = world.traffic();
  CHECK(agree_on_overflow(world.rank() == world.size() - 1, {nullptr, &world, nullptr}));
  check_one_flag_all_reduce(world.traffic() - w0, "world", world.size());
  CHECK_FALSE(agree_on_overflow(false, {&world}));
  CHECK(agree_on_overflow(true, {}) == true);  // no group: the local flag
}

TEST_CASE("overflow: loss scalers fed the agreed flag stay identical on every rank",
          "[mpi][overflow]") {
  Communicator world = Communicator::world();
  const int n = world.size(), r = world.rank();
  Mesh mesh(world, n, 1, 1);
  LossScalerConfig c;
  c.initial_scale_power = 16;  // room for 12 halvings at 4 ranks
  c.loss_scale_window = 2;
  c.hysteresis = 2;
  DynamicLossScaler agreed(c), alone(c);
  // Step s overflows on rank s % (n + 1) only (no rank when it equals n).
  int local_skips = 0, agreed_skips = 0;
  for (int s = 0; s < 12; ++s) {
    const bool local = has_overflow(grads(r == s % (n + 1), s));
    local_skips += alone.update(local);
    agreed_skips += agreed.update(agree_on_overflow(local, {&mesh.dp()}));
  }
  const LossScalerState st = agreed.state();
  for (double x : gather(world, st.scale)) CHECK(x == st.scale);
  for (double x : gather(world, double(st.cur_hysteresis))) CHECK(x == st.cur_hysteresis);
  for (double x : gather(world, double(agreed_skips))) CHECK(x == agreed_skips);
  // Deciding alone, the ranks would have skipped different steps: every rank
  // skipped fewer steps on its own than the ranks did together.
  CHECK(local_skips < agreed_skips);
  CHECK(agreed_skips == 12 - 12 / (n + 1));  // every step but those with no overflow anywhere
}
