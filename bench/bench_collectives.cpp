// bench-ranks: 2 4
// Our ring all-reduce (parallel/comm/ring.cpp, over isend/irecv) side by side
// with MPI_Allreduce (Open MPI's tuned collective) and with our Communicator's
// all_reduce (MPI_Allreduce under the timeout's watchdog: the framework's
// blocking path; its iall_reduce is MPI_Iallreduce + wait), f32 sum, 1 KB to
// 64 MB. Last, the ledger's bytes per call: the ring's measured, MPI's modelled.
//
//   mpirun -np 2 build/bench/bench_collectives [--quick]
//
// Columns follow nccl-tests (docs/PERFORMANCE.md there):
//   algbw = bytes / time
//   busbw = algbw · 2(D−1)/D   — what each rank's link actually carries in a
//           bandwidth-optimal all-reduce, so it is comparable across rank
//           counts and with the hardware's bandwidth.
// Each cell: a warm-up call, then the best of up to 10 rounds (at least 3,
// until ~0.3 s per algorithm is spent), a round being the mean over enough
// back-to-back calls for ~20 ms; a round's time is the slowest rank's. Best-of
// filters out the other processes of a shared machine; the algorithms
// alternate within each round, so background load hits them alike.
// Buffers hold zeros (repeated sums stay finite and never go subnormal);
// correctness is checked once per size beforehand.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/ring.h"
#include "parallel/comm/runtime.h"

using namespace ms;

namespace {

// Mean seconds per call over `reps` calls, slowest rank.
double time_calls(int reps, const std::function<void()>& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  for (int i = 0; i < reps; ++i) f();
  double local = (MPI_Wtime() - t0) / reps, slowest = 0;
  MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

// Calls per round for ~`target` seconds. Every rank gets the same count
// because `seconds_per_call` is already the all-reduced maximum.
int reps_for(double seconds_per_call, double target) {
  return int(std::clamp(target / std::max(seconds_per_call, 1e-7), 1.0, 2000.0));
}

// Every algorithm must produce the sum of ranks+1 at every element.
bool check(Communicator& world, int64_t n) {
  const int d = world.size();
  const float want = float(d * (d + 1) / 2);
  Tensor a = full({n}, world.rank() + 1), b = clone(a), c = clone(a);
  ring_all_reduce(world, a);
  world.all_reduce(b);
  MPI_Allreduce(MPI_IN_PLACE, c.host_raw_data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  int ok = 1;
  for (const Tensor& t : {a, b, c})
    for (int64_t i = 0; i < n; ++i) ok &= t.host_data<float>()[i] == want;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return ok != 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  return run_distributed(argc, argv, [&](Communicator& world) {
    const int d = world.size();
    const bool root = world.rank() == 0;
    const double bus = 2.0 * (d - 1) / d;
    const double budget = quick ? 0.05 : 0.3, round_s = quick ? 0.005 : 0.02;
    std::vector<int64_t> sizes;
    for (int64_t b = 1 << 10; b <= (int64_t(64) << 20); b *= 4)
      if (!quick || b == (1 << 10) || b == (4 << 20)) sizes.push_back(b);

    if (root) {
      std::printf("all-reduce, f32 sum, %d ranks; GB/s = 1e9 bytes/s; busbw = algbw * 2(D-1)/D\n",
                  d);
      std::printf("%9s | %28s | %28s | %28s | %6s\n", "", "ours: ring_all_reduce", "MPI_Allreduce",
                  "Communicator::all_reduce", "ring/");
      std::printf("%9s |", "size");
      for (int k = 0; k < 3; ++k) std::printf(" %9s %8s %8s |", "time us", "algbw", "busbw");
      std::printf(" %6s\n", "MPI");
    }
    for (int64_t bytes : sizes) {
      const int64_t n = bytes / 4;
      if (!check(world, n)) {
        if (root) std::printf("%9lld: WRONG RESULT, stopping\n", (long long)bytes);
        return 1;
      }
      Tensor t = zeros({n});
      std::vector<std::function<void()>> algos = {
          [&] { ring_all_reduce(world, t); },
          [&] {
            MPI_Allreduce(MPI_IN_PLACE, t.host_raw_data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
          },
          [&] { world.all_reduce(t); }};
      std::vector<int> reps;
      for (auto& f : algos) reps.push_back(reps_for(time_calls(1, f), round_s));
      std::vector<double> best(algos.size(), 1e30), spent(algos.size(), 0);
      for (int round = 0; round < 10; ++round) {
        bool enough = round >= 3;
        for (double t : spent) enough = enough && t > budget;
        if (enough) break;  // the same decision on every rank: times are all-reduced
        for (size_t k = 0; k < algos.size(); ++k) {
          double t = time_calls(reps[k], algos[k]);
          best[k] = std::min(best[k], t);
          spent[k] += t * reps[k];
        }
      }
      if (!root) continue;
      char label[32];
      if (bytes >= (1 << 20))
        std::snprintf(label, sizeof label, "%lld MB", (long long)(bytes >> 20));
      else
        std::snprintf(label, sizeof label, "%lld KB", (long long)(bytes >> 10));
      std::printf("%9s |", label);
      for (double s : best) {
        double algbw = double(bytes) / s / 1e9;
        std::printf(" %9.1f %8.2f %8.2f |", s * 1e6, algbw, algbw * bus);
      }
      std::printf(" %6.2f\n", best[1] / best[0]);
      std::fflush(stdout);
    }
    // One more call each, through the ledger (parallel/comm/ledger.h).
    Tensor t = zeros({int64_t(1) << 20});
    Traffic t0 = world.traffic();
    ring_all_reduce(world, t);
    Traffic t1 = world.traffic();
    world.all_reduce(t);
    Traffic t2 = world.traffic();
    if (root)
      std::printf(
          "ledger, 4 MB all-reduce, rank 0 sent: ring_all_reduce %lld B (measured), all_reduce "
          "%lld B (modelled: a ring's); 2(D-1)/D * 4 MB = %.0f B\n",
          (long long)(t1 - t0)[CommOp::RingAllReduce].sent,
          (long long)(t2 - t1)[CommOp::AllReduce].sent, bus * 4.0 * double(1 << 20));
    return 0;
  });
}
