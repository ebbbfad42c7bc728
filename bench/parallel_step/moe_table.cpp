#include "bench/parallel_step/moe_table.h"

#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "bench/parallel_step/common.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_optimizer.h"
#include "parallel/zero/memory.h"  // format_bytes: 1,234,567
#include "parallel/zero/zero_optimizer.h"

namespace ms::parallel_step {
namespace {

// The MoE table: the dense model at dp 2, the MoE with its experts
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

}  // namespace

void moe_table(Communicator& world, int steps, int warmup, const std::vector<int32_t>& xs,
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

}  // namespace ms::parallel_step
