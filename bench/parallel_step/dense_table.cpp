#include "bench/parallel_step/dense_table.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "bench/mpi_bench.h"
#include "parallel/zero/memory.h"  // format_bytes: 1,234,567
#include "tensor/factory.h"

namespace ms::parallel_step {

void print_dense_header(const GPTConfig& cfg, int64_t n_params, int usable, int warmup, int steps) {
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
  std::printf("%-26s %8s %26s %8s %9s %10s %18s %11s\n", "setup", "threads", "ms/step (min..max)",
              "CPU ms", "vs 1 proc", "calls/step", "bytes sent/step", "loss step 1");
}

void print_zero3_vs_ddp(const Result& dp, const Result& z3) {
  // DDP's ms / ZeRO-3's ms round by round: both ran in the same round, so
  // a burst of other load falls on the pair, not on one of them.
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

double activation_allreduce_ms(Communicator& world) {
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
  return allreduce_ms;
}

void print_dense_findings(const std::vector<Result>& results, int64_t n_params,
                          double allreduce_ms) {
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
}

}  // namespace ms::parallel_step
