// bench-ranks: 2
// One training step of the same GPT on the same global batch, six ways, in
// one run on two ranks: one process at 1 and at 2 threads (the other rank
// sleeps), data parallelism dp = 2 (ZeRO 0, half the batch each), dp = 2
// under ZeRO-3 (parameters gathered per block in forward and again in
// backward, parallel/zero/stage3.h), tensor
// parallelism tp = 2 (Shoeybi et al. 2019: both ranks read the whole batch,
// each holds half of every matrix), and tp = 2 with sequence parallelism
// (Korthikanti et al. 2022). Beside each time: the communication per step and
// per rank from the ledger (parallel/comm/ledger.h: calls, bytes sent), and
// the loss of the first step, which must agree (the same model, the same
// batch). Then what the numbers say. A second table runs context parallelism
// at T = 512 (parallel/cp/cp_gpt.h: each rank T/2 positions of both
// sequences; ulysses, ring, zigzag) against dp 2 on the same global batch of
// 2×512 tokens. A third table: a 4-expert MoE (every other block, top-1) at
// ep 2 (parallel/ep/: two experts per rank, the all-to-alls) and at ep 1 (the
// experts replicated over dp 2) against the dense model at dp 2, the same
// global batch.
//
//   mpirun -np 2 build/bench/bench_parallel_step [--steps N] [--quick] [--only dp]
//
// --only dp: the one-process 1-thread row, dp 2 and dp 2 under ZeRO-3 only
// (no tp, cp or MoE tables): the ZeRO-3/DDP ratio in a fraction of the time.
//
// Model: GPT-2, L=4, H=4, C=256, T=128, V=256; global batch B=8 (1,024
// tokens), f32, AdamW(lr 1e-3, betas 0.9/0.95, wd 0.1), clipping at 1.0.
// Multi-rank setups run 1 thread per rank, so every setup but the first uses
// the machine's two cores. A step's time is the slowest rank's; the median
// over the timed steps is reported (min..max beside it), and the median of
// the slowest rank's process CPU time (every thread: the time it computed or
// polled MPI, not the time it sat descheduled by other load); the 1-minute load
// average is printed before and after, and ZeRO-3/DDP is also taken round by
// round (median, min..max) so one burst of load cannot decide it. OMP_WAIT_POLICY=PASSIVE
// unless set (bench_train_step.cpp says why); the resting rank waits in a
// sleeping loop, not in MPI's polling barrier, so it leaves its core free.
// All six are built first and take one step each per round, in turn, so the
// other processes of a shared machine slow them alike; each rank widens its
// CPU affinity to every core (mpirun binds 2 ranks to a core each), or the
// 2-thread setup would run on one.
//
// The pieces live in bench/parallel_step/: common (sizes, a setup, a row),
// runner (one setup's step), dense_table, cp_table and moe_table.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <vector>

#include "bench/mpi_bench.h"
#include "bench/parallel_step/common.h"
#include "bench/parallel_step/cp_table.h"
#include "bench/parallel_step/dense_table.h"
#include "bench/parallel_step/moe_table.h"
#include "bench/parallel_step/runner.h"
#include "nn/gpt.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using namespace ms::parallel_step;

int main(int argc, char** argv) {
  int steps = 12, warmup = 2;
  const char* only = nullptr;
  if (!bench::parse_step_flags(argc, argv, steps, warmup, &only)) return 2;
  const bool only_dp = only != nullptr && std::strcmp(only, "dp") == 0;
  if (only != nullptr && !only_dp) {
    std::fprintf(stderr, "bench_parallel_step: --only %s: the one row group is 'dp'\n", only);
    return 2;
  }
  bench::use_passive_omp_wait(argv);
  return run_distributed(argc, argv, [&](Communicator& world) {
    const bool root = world.rank() == 0;
    if (world.size() != 2) {
      if (root) std::printf("bench_parallel_step runs on exactly 2 ranks (mpirun -np 2)\n");
      return 0;
    }
    // The 2-thread row needs both cores (a refusal is reported below).
    const int usable = bench::widen_cpu_affinity();
    // The same global batch on every rank: random bytes from one seed.
    Generator gen(1234);
    const std::vector<int32_t> x = bench::random_tokens(gen, kB * kT, kV);
    const std::vector<int32_t> y = bench::random_tokens(gen, kB * kT, kV);
    const std::vector<int32_t> long_x = bench::random_tokens(gen, kLongB * kLongT, kV);
    const std::vector<int32_t> long_y = bench::random_tokens(gen, kLongB * kLongT, kV);

    const Setup setups[] = {
        {"one process, 1 thread", 1, true, 1, 1, false},
        {"one process, 2 threads", 2, true, 1, 1, false},
        {"dp 2 (ZeRO 0)", 1, false, 2, 1, false},
        {"dp 2 (ZeRO 3)", 1, false, 2, 1, false, 3},
        {"tp 2", 1, false, 1, 2, false},
        {"tp 2 + sequence parallel", 1, false, 1, 2, true},
        // The cp table: T = 512, the same 2×512 tokens each way.
        {"T 512: dp 2 (ZeRO 0)", 1, false, 2, 1, false, 0, 1, "ulysses", kLongT, kLongB},
        {"T 512: cp 2 ulysses", 1, false, 1, 1, false, 0, 2, "ulysses", kLongT, kLongB},
        {"T 512: cp 2 ring", 1, false, 1, 1, false, 0, 2, "ring", kLongT, kLongB},
        {"T 512: cp 2 zigzag", 1, false, 1, 1, false, 0, 2, "zigzag", kLongT, kLongB},
    };
    constexpr size_t kFirstLong = 6;  // setups[kFirstLong..] run at T = 512
    constexpr size_t kOne = 0, kDp = 2, kZero3 = 3;
    auto wanted = [&](size_t i) { return !only_dp || i == kOne || i == kDp || i == kZero3; };
    GPTConfig cfg;
    cfg.vocab_size = kV, cfg.block_size = kT, cfg.n_layer = kL, cfg.n_head = kH, cfg.n_embd = kC;
    const int64_t n_params = GPT(cfg, 1).num_parameters();
    if (root) print_dense_header(cfg, n_params, usable, warmup, steps);
    // Every setup takes one step per round, in turn, so the load of a shared
    // machine falls on all of them alike.
    std::vector<std::unique_ptr<Runner>> runners;  // null: left out by --only
    for (size_t i = 0; i < std::size(setups); ++i) {
      const Setup& s = setups[i];
      runners.push_back(!wanted(i)      ? nullptr
                        : s.T == kLongT ? std::make_unique<Runner>(s, world, long_x, long_y)
                                        : std::make_unique<Runner>(s, world, x, y));
    }
    for (int round = 0; round < warmup + steps; ++round)
      for (auto& r : runners)
        if (r) r->step(round >= warmup);
    std::vector<Result> results;
    for (size_t i = 0; i < runners.size(); ++i) {
      results.push_back(runners[i] ? runners[i]->result() : Result{});
      if (!runners[i]) continue;
      const Result& r = results.back();
      const Setup& s = setups[i];
      if (!root) continue;
      if (i == kFirstLong) print_cp_heading();
      // The cp rows are compared with dp 2 at the same T (the first long row).
      print_row(s, r, results[i >= kFirstLong ? kFirstLong : 0].median_ms);
    }
    if (root) print_zero3_vs_ddp(results[kDp], results[kZero3]);
    if (only_dp) return 0;
    const double allreduce_ms = activation_allreduce_ms(world);  // collective
    if (root) {
      print_dense_findings(results, n_params, allreduce_ms);
      print_cp_finding(results[kFirstLong], results[kFirstLong + 1], results[kFirstLong + 2],
                       results[kFirstLong + 3]);
    }
    moe_table(world, steps, warmup, x, y);  // collective
    return 0;
  });
}
