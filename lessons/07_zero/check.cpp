// Lesson 07 grader (4 ranks). Every rank holds a 2-layer GPT whose parameters
// are views into one flat buffer padded to a multiple of 4 (30,570 -> 30,572) (the library's
// FlatParams, exactly as ZeRO lays them out), computes the gradient of its own
// quarter of the global batch, packs it flat, and calls your zero1_step().
// After each of 3 steps every rank's parameters must equal those of one
// process training on the whole batch with the same SGD-with-momentum, and the
// model (which only sees its views) must compute one process's loss. The
// verdicts are all-reduced, so all ranks agree; the first failing rank says
// what looks wrong. Then the communication ledger (parallel/comm/ledger.h)
// says what your step moved, per rank: right parameters bought with more than
// stage 1's 2Ψ (the all-reduce-then-slice answer moves 3Ψ) still fail.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "lessons/07_zero/lesson.h"
#include "lessons/lesson_check.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/ledger.h"
#include "parallel/comm/runtime.h"
#include "parallel/zero/flat_params.h"
#include "parallel/zero/memory.h"

using namespace ms;
using lesson::agree;

namespace {

constexpr double kTimeout = 20, kLr = 0.1, kMu = 0.9;
constexpr int64_t B = 2, T = 15;
constexpr int kSteps = 3;

// max |a - b| over [lo, hi), relative to max |want| over the whole buffer.
double rel(const std::vector<double>& got, const std::vector<double>& want, int64_t lo,
           int64_t hi) {
  double scale = 0, worst = 0;
  for (double x : want) scale = std::max(scale, std::fabs(x));
  for (int64_t i = lo; i < hi; ++i) worst = std::max(worst, std::fabs(got[i] - want[i]) / scale);
  return worst;
}

// "" when the buffer matches; else a diagnosis. `before`: the values before this step.
std::string diagnose(const Tensor& flat, const Tensor& before, const Tensor& want, int D, int r,
                     int step) {
  std::vector<double> g = flat.to_vector(), b = before.to_vector(), w = want.to_vector();
  const int64_t n = static_cast<int64_t>(g.size()), S = n / D;
  if (rel(g, w, 0, n) <= 1e-5) return "";
  std::string head = str_cat("step ", step, ": the parameters are off by ", rel(g, w, 0, n),
                             " (relative to the largest). ");
  if (g == b) return head + "flat_params did not change at all (still the TODO stub?).";
  const bool mine_ok = rel(g, w, r * S, (r + 1) * S) <= 1e-5;
  bool others_stale = true;
  for (int64_t i = 0; i < n; ++i)
    if ((i < r * S || i >= (r + 1) * S) && g[i] != b[i]) others_stale = false;
  if (mine_ok && others_stale)
    return head + str_cat("Your slice [", r * S, ", ", (r + 1) * S,
                          ") is right but the other "
                          "slices never changed: all-gather the slices after the update.");
  if (mine_ok)
    return head +
           "Your own slice is right; the others are not: does every rank all-gather its "
           "own slice (block r = rank r's data)?";
  if (step == 1) {  // first step: update = -lr·g, so a summed gradient shows as D times the step
    std::vector<double> d_got(n), d_want(n);
    for (int64_t i = 0; i < n; ++i) d_got[i] = g[i] - b[i], d_want[i] = D * (w[i] - b[i]);
    if (rel(d_got, d_want, r * S, (r + 1) * S) <= 1e-4)
      return head + str_cat("Your slice moved ", D,
                            "x too far: the gradients were SUMMED. "
                            "Average them (ReduceOp::Avg).");
  }
  return head + str_cat("Your own slice [", r * S, ", ", (r + 1) * S,
                        ") is wrong: check the "
                        "momentum (buf = mu*buf + g, then p -= lr*buf) and the slice offsets.");
}

// Stage 1's traffic per rank and step, in the ledger's ring model: a
// reduce-scatter of the padded gradient, (D-1)/D·Ψp·4 bytes, plus an
// all-gather of the padded parameters, the same again — 2Ψ, exactly what DDP's
// all-reduce moves (the ZeRO paper's communication analysis).
int64_t stage1_bytes(int64_t padded, int D) {
  return 2 * (D - 1) * (padded / D) * 4;
}

// "" when this rank's step moved no more than stage 1 needs; else a diagnosis.
// `t`: what this rank's zero1_step calls moved over all kSteps steps.
std::string diagnose_traffic(const Traffic& t, int64_t padded, int D) {
  const int64_t want = stage1_bytes(padded, D), sent = t.total().sent / kSteps;
  const int64_t calls = t.total().calls / kSteps;
  if (sent <= want + 8 * calls) return "";  // a ring's uneven blocks: a few elements
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.2f", double(sent) / double(want));
  std::string head =
      str_cat("your zero1_step sent ", format_bytes(double(sent)),
              " B per step on this rank; a stage-1 step needs ", format_bytes(double(want)),
              " B (reduce-scatter Ψ + all-gather Ψ = 2Ψ): ", ratio, "x. ");
  const int64_t all_reduces = t[CommOp::AllReduce].calls + t[CommOp::RingAllReduce].calls;
  if (all_reduces > 0)
    return head +
           "You ALL-REDUCED the gradients, then updated your slice: every rank received all Ψ "
           "averaged gradients (2Ψ) though its optimizer reads only Ψ/D of them, and the "
           "all-gather added Ψ: 3Ψ instead of 2Ψ, 1.5x DDP. Reduce-scatter instead "
           "(ReduceOp::Avg): rank r receives only the averaged slice r.";
  return head +
         "The table above shows which op moved it. Reduce-scatter the gradients (Ψ), all-gather "
         "the updated slices (Ψ), nothing more.";
}

// Rank 0's table of what every rank's zero1_step moved, per step.
std::string traffic_table(const std::vector<Traffic>& per_rank, int64_t padded, int D) {
  std::string s =
      str_cat("What your zero1_step called, per rank and step (calls counted by the communication "
              "ledger over ", kSteps, " steps, divided by ", kSteps,
              "; * bytes = what a ring moves for those calls):\n");
  for (size_t r = 0; r < per_rank.size(); ++r) {
    std::string ops;
    for (int i = 0; i < kNumCommOps; ++i) {
      const OpTraffic& o = per_rank[r][CommOp(i)];
      if (o.calls == 0) continue;
      ops += str_cat(ops.empty() ? "" : ";  ", comm_op_name(CommOp(i)),
                     comm_op_measured(CommOp(i)) ? "" : "*", " x", o.calls / kSteps, ": sent ",
                     format_bytes(double(o.sent / kSteps)), " B, received ",
                     format_bytes(double(o.received / kSteps)), " B");
    }
    s += str_cat("  rank ", r, ": ", ops.empty() ? "no communication" : ops, "  | total sent ",
                 format_bytes(double(per_rank[r].total().sent / kSteps)), " B\n");
  }
  const int64_t S = padded / D;
  s += str_cat("  formula, stage 1: reduce-scatter (D-1)/D·Ψp·4 + all-gather (D-1)/D·Ψp·4 = 2·",
               D - 1, "·", format_bytes(double(S)),
               "·4 = ", format_bytes(double(stage1_bytes(padded, D))),
               " B per rank per step (Ψp = ", format_bytes(double(padded)),
               " padded); DDP's all-reduce moves the same, ZeRO-3 1.5x\n");
  s += "  * ring-model bytes: MPI runs these collectives with its own algorithms, so the ledger\n"
       "    counts what a ring moves for the call (parallel/comm/ledger.h); send, recv and\n"
       "    ring_* rows are counted messages.\n";
  return s;
}

// The ZeRO paper's mixed-precision accounting (its Figure 1): fp16
// parameters 2Ψ, fp16 gradients 2Ψ, Adam's fp32 master copy, momentum and
// variance KΨ with K = 12; each stage divides one more term by D.
std::string mixed_precision_row(double psi, int D) {
  const double K = 12, gb = 1e9;
  const double stage[4] = {(2 + 2 + K) * psi, 2 * psi + 2 * psi + K * psi / D,
                           2 * psi + (2 + K) * psi / D, (2 + 2 + K) * psi / D};
  char line[256];
  std::snprintf(line, sizeof line,
                "  Ψ = %.1fB, D = %d:   stage 0 %.1f GB   stage 1 %.1f GB   stage 2 %.1f GB   "
                "stage 3 %.1f GB\n",
                psi / 1e9, D, stage[0] / gb, stage[1] / gb, stage[2] / gb, stage[3] / gb);
  return str_cat(
      "formula, mixed-precision Adam (the ZeRO paper's Figure 1; GB = 10^9 bytes): fp16 params "
      "2Ψ + fp16 grads 2Ψ + KΨ, K = 12\n  (fp32 master, momentum, variance); stage 0 (2+2+K)Ψ, "
      "1 2Ψ+2Ψ+KΨ/D, 2 2Ψ+(2+K)Ψ/D, 3 (2+2+K)Ψ/D:\n",
      line);
}

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 30, c.block_size = T;  // Ψ = 30,570: 4 needs padding
  return c;
}

bool run(Communicator& world) {
  const int D = world.size(), r = world.rank();
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  GPT model(tiny(), 1), reference(tiny(), 1);
  // One flat group, all parameters; they become views of `flat_params`.
  std::vector<int> all;
  for (int i = 0; i < static_cast<int>(model.parameters().size()); ++i) all.push_back(i);
  FlatParams layout(model.parameters(), {all}, D);
  FlatParams ref_layout(reference.parameters(), {all}, D);
  Tensor flat_params = layout.pack_values(0);
  layout.bind(0, flat_params);
  const int64_t psi = model.num_parameters(), N = flat_params.numel(), S = N / D;
  Tensor momentum = zeros({S});
  SGD ref_opt(reference.parameters(), kLr, kMu);
  if (r == 0)
    std::printf(
        "GPT with Ψ = %lld parameters in one flat buffer padded to %lld (a multiple of "
        "D = %d): rank r owns slice [r·%lld, (r+1)·%lld)\n",
        static_cast<long long>(psi), static_cast<long long>(N), D, static_cast<long long>(S),
        static_cast<long long>(S));
  std::string why, losses;
  Traffic moved;  // what this rank's zero1_step calls moved, summed over the steps
  // Every rank runs the same number of steps: one that stopped at its own
  // failure would leave the others waiting in the next collective.
  bool any_failed = false;
  for (int step = 1; step <= kSteps && !any_failed; ++step) {
    Batch mine = data.train_batch(step, r, D, B, T),
          global = data.train_batch(step, 0, 1, D * B, T);
    model.zero_grad();
    Tensor loss = model.loss(mine.x, mine.y);
    loss.backward();
    Tensor flat_grads = layout.pack_grads(0);
    Tensor before = clone(flat_params);
    const Traffic start = world.traffic();
    zero1_step(world, flat_params, flat_grads, momentum, kLr, kMu);
    moved += world.traffic() - start;
    reference.zero_grad();
    Tensor ref_loss = reference.loss(global.x, global.y);
    ref_loss.backward();
    ref_opt.step();
    why = diagnose(flat_params, before, ref_layout.pack_values(0), D, r, step);
    // The model reads its parameters through views of flat_params: no copy back needed.
    Tensor avg = from_vector(std::vector<double>{loss.item()}, {1}, DType::F64);
    world.all_reduce(avg, ReduceOp::Avg);
    losses += str_cat("  step ", step, ": mean loss over ranks ", avg.item(), ", one process ",
                      ref_loss.item(), "\n");
    Tensor failed = from_vector(std::vector<int32_t>{why.empty() ? 0 : 1}, {1});
    world.all_reduce(failed, ReduceOp::Max);
    any_failed = failed.host_data<int32_t>()[0] != 0;
  }
  if (r == 0) std::printf("%s", losses.c_str());
  if (!agree(world, why, "3 ZeRO-1 steps on 4 ranks = 3 SGD-momentum steps of one process"))
    return false;

  // Right parameters are not enough: they must cost stage 1's 2Ψ, not more.
  std::vector<Traffic> per_rank = gather_traffic(world, moved);
  if (r == 0) std::printf("\n%s", traffic_table(per_rank, N, D).c_str());
  if (!agree(world, diagnose_traffic(moved, N, D),
             "your step moves no more than stage 1's 2Ψ per rank, what DDP's all-reduce moves"))
    return false;

  if (r == 0) {
    std::printf(
        "\nWhat each rank held (bytes, measured from the tensors):  parameters %s (full),  "
        "gradients %s (full),  momentum %s (its slice only: DDP would hold %s)\n",
        format_bytes(double(flat_params.nbytes())).c_str(),
        format_bytes(double(layout.pack_grads(0).nbytes())).c_str(),
        format_bytes(double(momentum.nbytes())).c_str(), format_bytes(double(N * 4)).c_str());
    std::printf("\nformula, fp32 as in this exercise (SGD momentum: K = 4):\n%s\n",
                format_memory_formula_table(psi, {D}, 4).c_str());
    std::printf("%s", mixed_precision_row(7.5e9, 64).c_str());
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  return run_distributed(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    return lesson::finish(world, run(world));
  });
}
