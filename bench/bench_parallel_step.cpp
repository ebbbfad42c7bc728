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
#include <mpi.h>
#include <omp.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "bench/mpi_bench.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/runtime.h"
#include "parallel/cp/cp_gpt.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_optimizer.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/memory.h"  // format_bytes: 1,234,567
#include "parallel/zero/zero_optimizer.h"

using namespace ms;

namespace {

constexpr int64_t kL = 4, kH = 4, kC = 256, kT = 128, kV = 256, kB = 8;
constexpr int64_t kLongT = 512, kLongB = 2;  // the cp table: the same 1,024 tokens, longer rows

struct Setup {
  const char* name;
  int threads;  // per rank
  bool alone;   // rank 0 only
  int dp, tp;
  bool sp;
  int zero_stage = 0;
  int cp = 1;                    // context-parallel ranks (the two ranks when 2)
  const char* algo = "ulysses";  // --cp-algo
  int64_t T = kT, B = kB;        // sequence length and global batch
};

struct Result {
  double median_ms = 0, best_ms = 0, worst_ms = 0, cpu_ms = 0, first_loss = NAN;
  std::vector<double> round_ms, round_cpu_ms;  // per timed round, in round order
  OpTraffic per_step;                          // this rank's, summed over its dp and tp groups
  int64_t sent_min = 0, sent_max = 0;
};

// The other rank's wait: MPI's blocking barrier polls and would take the core
// the working rank's second thread needs.
void rest_until_released() {
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  for (int done = 0; !done;) {
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    const timespec nap{0, 200'000};
    if (!done) nanosleep(&nap, nullptr);
  }
}
void release() {
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  MPI_Wait(&r, MPI_STATUS_IGNORE);
}

// Rows [first, first + n) of a (B, T) token batch.
Tensor rows(const std::vector<int32_t>& all, int64_t first, int64_t n, int64_t T) {
  return from_vector(std::vector<int32_t>(all.begin() + first * T, all.begin() + (first + n) * T),
                     {n, T});
}

double max_over_ranks(double v) {
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

// One setup, built once; step() runs one timed training step. Rank 1 holds
// nothing for the one-process setups and rests through their steps.
class Runner {
 public:
  Runner(const Setup& s, Communicator& world, const std::vector<int32_t>& xs,
         const std::vector<int32_t>& ys)
      // Fresh groups per setup: copies of a Communicator share one ledger, and
      // split() starts a new one (collective over the world: every rank builds
      // every runner).
      : s_(s),
        // Under cp the two ranks are the dp×cp group ZeRO averages over.
        dp_(s.dp * s.cp > 1 ? world.split(0, world.rank()) : world.split(world.rank(), 0)),
        tp_(world.split(0, world.rank())),
        cp_(world.split(0, world.rank())) {
    if (s.alone && world.rank() != 0) return;
    GPTConfig cfg;
    cfg.vocab_size = kV, cfg.block_size = s.T, cfg.n_layer = kL, cfg.n_head = kH, cfg.n_embd = kC;
    serial_ = std::make_shared<GPT>(cfg, 1);  // the same initial model everywhere
    if (s.tp > 1) cut_ = std::make_shared<TpGPT>(serial_, tp_, s.sp);
    if (s.cp > 1) context_ = std::make_shared<CpGPT>(serial_, nullptr, cp_, s.algo);
    ZeroOptions opts;
    opts.stage = s.zero_stage;
    if (cut_) opts.tp = ZeroTensorParallel{tp_, cut_->replicated_mask(), s.sp};
    engine_ = std::make_unique<ZeroOptimizer>(
        cut_ ? cut_->gpt() : *serial_, dp_, opts, [](std::vector<Tensor> ps) {
          return std::make_unique<AdamW>(std::move(ps), 1e-3, 0.9, 0.95, 1e-8, 0.1);
        });
    // dp rank r reads rows [r·B/D, (r+1)·B/D); tp and cp ranks read all of
    // them (a cp rank keeps its positions).
    const int64_t b = s.B / s.dp, first = s.dp > 1 ? world.rank() * b : 0;
    x_ = rows(xs, first, b, s.T), y_ = rows(ys, first, b, s.T);
  }

  // Milliseconds of the slowest rank; the first call records the loss.
  void step(bool timed) {
    if (s_.alone && !engine_) return rest_until_released();
    omp_set_num_threads(s_.threads);
    if (timed && !counting_) before_ = traffic(), counting_ = true;
    if (!s_.alone) MPI_Barrier(MPI_COMM_WORLD);  // raw MPI: outside the ledger
    const double t0 = MPI_Wtime(), c0 = bench::process_cpu_seconds();
    Tensor loss = context_ ? context_->loss(x_, y_)
                  : cut_   ? cut_->loss(x_, y_)
                           : serial_->loss(x_, y_);
    const double l = loss.item();
    loss.backward();
    engine_->step(1e-3, 1.0);
    const double dt = (MPI_Wtime() - t0) * 1e3;
    const double cpu = (bench::process_cpu_seconds() - c0) * 1e3;
    if (timed) {
      ms_.push_back(s_.alone ? dt : max_over_ranks(dt));
      cpu_ms_.push_back(s_.alone ? cpu : max_over_ranks(cpu));
    }
    if (std::isnan(res_.first_loss)) {
      double sum = l;  // dp (and cp) ranks hold their half's mean: average them
      const int halves = s_.dp * s_.cp;
      if (halves > 1) MPI_Allreduce(&l, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      res_.first_loss = sum / halves;
    }
    if (s_.alone) release();
  }

  // Collective over the world for the multi-rank setups.
  Result result() {
    if (s_.alone && !engine_) return res_;
    const int64_t n = static_cast<int64_t>(ms_.size());
    const OpTraffic total = (traffic() - before_).total();
    res_.per_step = {total.calls / n, total.sent / n, total.received / n, total.payload / n};
    res_.round_ms = ms_, res_.round_cpu_ms = cpu_ms_;
    std::sort(ms_.begin(), ms_.end());
    std::sort(cpu_ms_.begin(), cpu_ms_.end());
    res_.median_ms = ms_[ms_.size() / 2], res_.best_ms = ms_.front(), res_.worst_ms = ms_.back();
    res_.cpu_ms = cpu_ms_[cpu_ms_.size() / 2];
    long long mine = res_.per_step.sent, lo = mine, hi = mine;
    if (!s_.alone) {
      MPI_Allreduce(&mine, &lo, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
      MPI_Allreduce(&mine, &hi, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    }
    res_.sent_min = lo, res_.sent_max = hi;
    return res_;
  }

 private:
  // This rank's traffic on its dp group and, under tp or cp, that group.
  Traffic traffic() const {
    return dp_.traffic() + (cut_ ? tp_.traffic() : Traffic()) +
           (context_ ? cp_.traffic() : Traffic());
  }

  Setup s_;
  Communicator dp_, tp_, cp_;
  std::shared_ptr<GPT> serial_;
  std::shared_ptr<TpGPT> cut_;
  std::shared_ptr<CpGPT> context_;
  std::unique_ptr<ZeroOptimizer> engine_;
  Tensor x_, y_;
  std::vector<double> ms_, cpu_ms_;  // the slowest rank's, per timed step
  Traffic before_;
  bool counting_ = false;
  Result res_;
};

// The MoE table (ep_rows): the dense model at dp 2, the MoE with its experts
// replicated (ep 1), and at ep 2; each rank half the global batch. Bytes are
// this rank's over every group it talks on (dp, ep, expert-dp).
struct EpRow {
  const char* name;
  int64_t experts;
  int ep;
  double median_ms = 0;
  int64_t sent = 0, a2a = 0, calls = 0;
  double first_loss = NAN;
};

void ep_rows(Communicator& world, int steps, int warmup, const std::vector<int32_t>& xs,
             const std::vector<int32_t>& ys) {
  EpRow rows_[] = {
      {"dense, dp 2", 0, 1}, {"MoE 4 experts, ep 1 (dp 2)", 4, 1}, {"MoE 4 experts, ep 2", 4, 2}};
  const int64_t b = kB / 2;
  const Tensor x = rows(xs, world.rank() * b, b, kT), y = rows(ys, world.rank() * b, b, kT);
  omp_set_num_threads(1);
  for (EpRow& row : rows_) {
    GPTConfig cfg;
    cfg.vocab_size = kV, cfg.block_size = kT, cfg.n_layer = kL, cfg.n_head = kH, cfg.n_embd = kC;
    cfg.moe.experts = row.experts, cfg.moe.every = 2;
    GPT model(cfg, 1);
    Communicator dp = world.split(0, world.rank());
    auto adamw = [](std::vector<Tensor> ps) {
      return std::make_unique<AdamW>(std::move(ps), 1e-3, 0.9, 0.95, 1e-8, 0.1);
    };
    std::unique_ptr<EpGroups> groups;
    std::unique_ptr<ZeroOptimizer> dense, experts;
    if (row.ep > 1) {
      groups = std::make_unique<EpGroups>(dp, row.ep);
      install_expert_parallel(model, *groups);
      const ExpertParams ex = expert_params(model, row.ep, groups->ep.rank());
      ZeroOptions d, e;
      d.subset = ex.expert;
      d.subset.flip();
      e.subset = ex.local;
      dense = std::make_unique<ZeroOptimizer>(model, dp, d, adamw);
      experts = std::make_unique<ZeroOptimizer>(model, groups->expert_dp, e, adamw);
    } else {
      dense = std::make_unique<ZeroOptimizer>(model, dp, ZeroOptions{}, adamw);
    }
    auto traffic = [&] {
      Traffic t = dp.traffic();
      if (groups) t += groups->ep.traffic() + groups->expert_dp.traffic();
      return t;
    };
    std::vector<double> ms;
    Traffic before;
    for (int i = 0; i < warmup + steps; ++i) {
      if (i == warmup) before = traffic();
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      Tensor loss = model.loss(x, y);
      const double l = loss.item();
      loss.backward();
      if (experts)
        ep_optimizer_step(*dense, *experts, *groups, 1e-3, 1.0);
      else
        dense->step(1e-3, 1.0);
      const double dt = max_over_ranks((MPI_Wtime() - t0) * 1e3);
      if (i >= warmup) ms.push_back(dt);
      if (std::isnan(row.first_loss)) {
        double sum = l;
        MPI_Allreduce(&l, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        row.first_loss = sum / 2;
      }
    }
    const Traffic t = traffic() - before;
    row.sent = t.total().sent / steps;
    row.calls = t.total().calls / steps;
    row.a2a = t[CommOp::AllToAll].sent / steps;
    std::sort(ms.begin(), ms.end());
    row.median_ms = ms[ms.size() / 2];
  }
  if (world.rank() != 0) return;
  std::printf(
      "\nmixture of experts: 4 experts in every other block (top-1, capacity factor 1), the same "
      "global batch %lld×%lld; dp 2 throughout (ep 2: two experts per rank)\n",
      (long long)kB, (long long)kT);
  std::printf("%-28s %10s %10s %10s %18s %18s %11s\n", "setup", "ms/step", "tokens/s", "calls/step",
              "bytes sent/step", "of it all-to-all", "loss step 1");
  for (const EpRow& r : rows_)
    std::printf("%-28s %10.1f %10.0f %10lld %18s %18s %11.6f\n", r.name, r.median_ms,
                double(kB * kT) / (r.median_ms / 1e3), (long long)r.calls,
                format_bytes(r.sent).c_str(), format_bytes(r.a2a).c_str(), r.first_loss);
  std::printf(
      "- ep 2 sends the experts' gradients nowhere (expert-dp is 1 rank: each expert lives on "
      "one rank) but moves tokens: 4 all-to-alls per MoE layer per step of the (E, capacity, C) "
      "buffer, half of it leaving each rank; ep 1 all-reduces all four experts' gradients "
      "instead. Which is cheaper depends on tokens × C against the experts' size; the loss of "
      "step 1 is the same model's at ep 1 and ep 2 (the same per-rank routing).\n");
}

}  // namespace

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
    if (root) {
      std::printf(
          "GPT %s, %lld parameters; global batch %lld×%lld = %lld tokens per step, f32, "
          "AdamW\n",
          cfg.describe().c_str(), (long long)n_params, (long long)kB, (long long)kT,
          (long long)(kB * kT));
      std::printf(
          "2 ranks on %ld online CPU(s); rank 0 may run on %d; %d warm-up + %d timed "
          "steps, ms = median (min..max) of the slowest rank, CPU ms = median of its process "
          "CPU time; load average (1 min) at start: %s\n",
          sysconf(_SC_NPROCESSORS_ONLN), usable, warmup, steps, bench::loadavg().c_str());
      if (usable < 2)
        std::printf(
            "NOTE: rank 0 is bound to one CPU and could not widen it: the 2-thread "
            "row cannot use two; rerun with mpirun --bind-to none\n");
      std::printf("%-26s %8s %26s %8s %9s %10s %18s %11s\n", "setup", "threads",
                  "ms/step (min..max)", "CPU ms", "vs 1 proc", "calls/step", "bytes sent/step",
                  "loss step 1");
    }
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
      if (i == kFirstLong)
        std::printf(
            "\ncontext parallelism: GPT at T %lld, global batch %lld×%lld tokens; vs dp 2\n",
            (long long)kLongT, (long long)kLongB, (long long)kLongT);
      char time[48], ratio[16];
      std::snprintf(time, sizeof time, "%.1f (%.1f..%.1f)", r.median_ms, r.best_ms, r.worst_ms);
      // The cp rows are compared with dp 2 at the same T (the first long row).
      const double base = results[i >= kFirstLong ? kFirstLong : 0].median_ms;
      std::snprintf(ratio, sizeof ratio, "%.2fx", r.median_ms / base);
      std::string sent = format_bytes(r.per_step.sent);
      if (r.sent_min != r.sent_max) sent += " (max " + format_bytes(r.sent_max) + ")";
      std::printf("%-26s %8s %26s %8.1f %9s %10lld %18s %11.6f\n", s.name,
                  (std::to_string(s.threads) + (s.alone ? "" : "×2")).c_str(), time, r.cpu_ms,
                  ratio, (long long)r.per_step.calls, sent.c_str(), r.first_loss);
    }
    if (root) {
      // DDP's ms / ZeRO-3's ms round by round: both ran in the same round, so
      // a burst of other load falls on the pair, not on one of them.
      const Result &dp = results[kDp], &z3 = results[kZero3];
      std::vector<double> wall, cpu;
      for (size_t k = 0; k < dp.round_ms.size(); ++k) {
        wall.push_back(dp.round_ms[k] / z3.round_ms[k]);
        cpu.push_back(dp.round_cpu_ms[k] / z3.round_cpu_ms[k]);
      }
      std::sort(wall.begin(), wall.end());
      std::sort(cpu.begin(), cpu.end());
      std::printf(
          "ZeRO-3 / DDP speed (DDP's ms / ZeRO-3's ms, per round): median %.2f (min..max "
          "%.2f..%.2f) over %zu rounds; by CPU time %.2f (%.2f..%.2f); load average (1 min) "
          "now: %s\n",
          wall[wall.size() / 2], wall.front(), wall.back(), wall.size(), cpu[cpu.size() / 2],
          cpu.front(), cpu.back(), bench::loadavg().c_str());
    }
    if (only_dp) return 0;
    // TP's communication alone: one all-reduce of a (B, T, C) activation, the
    // best of 20 (zeros: repeated sums stay finite).
    Communicator probe = world.split(0, world.rank());
    Tensor act = zeros({kB, kT, kC});
    double allreduce_ms = 1e30;
    for (int i = 0; i < 22; ++i) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      probe.all_reduce(act);
      const double dt = max_over_ranks((MPI_Wtime() - t0) * 1e3);
      if (i >= 2) allreduce_ms = std::min(allreduce_ms, dt);
    }
    if (root) {
      const Result &one = results[0], &two = results[1], &dp = results[2], &z3 = results[3],
                   &tp = results[4], &sp = results[5];
      std::printf(
          "\nbytes are this rank's (rank 1 sends the same), modelled as a ring for MPI's "
          "collectives (parallel/comm/ledger.h)\n\nWhat this says (on %ld core(s) of one "
          "machine, MPI over shared memory):\n",
          sysconf(_SC_NPROCESSORS_ONLN));
      std::printf(
          "- tp 2 sends %.1f× the bytes of dp 2 per step, in %lld calls against dp's %lld: "
          "DP moves the gradients once per step (2(D-1)/D·Ψ·4 bytes), TP moves activations "
          "(B·T·C floats) %s times per step — 2 all-reduces per layer forward, 2 backward, "
          "plus the embedding's and the head's — so its volume grows with the batch and "
          "the sequence, DP's only with the model (here (4L+2)·B·T·C = %s floats against "
          "Ψ = %s).\n",
          double(tp.per_step.sent) / double(std::max<int64_t>(dp.per_step.sent, 1)),
          (long long)tp.per_step.calls, (long long)dp.per_step.calls,
          std::to_string(4 * kL + 2).c_str(), format_bytes((4 * kL + 2) * kB * kT * kC).c_str(),
          format_bytes(n_params).c_str());
      std::printf(
          "- Each TP all-reduce sits on the critical path: the next layer needs its sum, so "
          "both ranks meet %lld times a step, and a rank held up by anything (on a shared "
          "machine, other processes) holds up the other at each meeting; DP's ranks meet once, "
          "and DDP can all-reduce gradient buckets while backward still runs. Step time vs one "
          "process: tp 2 %.2f×, tp 2 + sp %.2f×, dp 2 %.2f×, one process with 2 threads "
          "%.2f×.\n",
          (long long)tp.per_step.calls, tp.median_ms / one.median_ms, sp.median_ms / one.median_ms,
          dp.median_ms / one.median_ms, two.median_ms / one.median_ms);
      std::printf(
          "- ZeRO-3 runs at %.2f× DDP's speed (DDP's ms / ZeRO-3's ms) and sends %.2f× its "
          "bytes: each block is all-gathered before its forward and again before its backward "
          "(the paper's 3Ψ against DDP's 2Ψ, less the embeddings, which stay gathered); "
          "nothing is recomputed. On blocking CPU MPI the prefetch only issues the next "
          "block's gather early; the ranks still wait for it.\n",
          dp.median_ms / z3.median_ms,
          double(z3.per_step.sent) / double(std::max<int64_t>(dp.per_step.sent, 1)));
      std::printf(
          "- Sequence parallelism sends %.2fx tp's bytes (%s vs %s) in more calls (%lld): each "
          "all-reduce becomes an all-gather + a reduce-scatter of the same volume, each column "
          "layer all-gathers its T/t-token input again in backward (it kept only its shard, as "
          "Megatron does), and the replicated gradients are summed once; what it saves is "
          "activation memory (minispeed train prints it), not time.\n",
          static_cast<double>(sp.per_step.sent) / static_cast<double>(tp.per_step.sent),
          format_bytes(sp.per_step.sent).c_str(), format_bytes(tp.per_step.sent).c_str(),
          (long long)sp.per_step.calls);
      std::printf(
          "- Time: one all-reduce of a (B, T, C) activation (%s bytes) takes %.2f ms here "
          "(best of 20), so tp's %lld all-reduces of it come to about %.0f ms of its %.0f ms "
          "step: on a CPU the matrix multiplies are slow enough to hide them. A GPU runs the "
          "same multiplies orders of magnitude faster while the bytes stay the same, so their "
          "share grows by that factor unless the link grows too: NVLink carries hundreds of "
          "GB/s between the GPUs of one node, a network link between nodes tens. That is why "
          "Megatron keeps tp inside a node (t ≤ 8) and spans nodes with dp and pp, whose "
          "traffic comes once per step, not per layer.\n",
          format_bytes(kB * kT * kC * 4).c_str(), allreduce_ms, (long long)(4 * kL + 2),
          double(4 * kL + 2) * allreduce_ms, tp.median_ms);
      const Result &ldp = results[kFirstLong], &uly = results[kFirstLong + 1],
                   &ring = results[kFirstLong + 2], &zz = results[kFirstLong + 3];
      auto tok_s = [](const Result& r) { return double(kLongB * kLongT) / (r.median_ms / 1e3); };
      std::printf(
          "- Context parallelism at T %lld (the \"vs\" column is against dp 2 here): tokens/s "
          "dp 2 %.0f, cp 2 ulysses %.0f, ring %.0f, zigzag %.0f. Bytes per step: dp 2 %s (the "
          "gradients once), ulysses %s, ring %s, zigzag %s — cp adds its attention exchange "
          "(every layer, forward and backward) to the same gradient all-reduce, so on one "
          "machine it only pays off when a sequence's activations (here B·n_head·T² scores) no "
          "longer fit one rank.\n",
          (long long)kLongT, tok_s(ldp), tok_s(uly), tok_s(ring), tok_s(zz),
          format_bytes(ldp.per_step.sent).c_str(), format_bytes(uly.per_step.sent).c_str(),
          format_bytes(ring.per_step.sent).c_str(), format_bytes(zz.per_step.sent).c_str());
    }
    ep_rows(world, steps, warmup, x, y);  // collective: the MoE table
    return 0;
  });
}
