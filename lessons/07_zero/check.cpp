// Lesson 07 grader (4 ranks). Every rank holds a 2-layer GPT whose parameters
// are views into one flat buffer padded to a multiple of 4 (30,570 -> 30,572) (the library's
// FlatParams, exactly as ZeRO lays them out), computes the gradient of its own
// quarter of the global batch, packs it flat, and calls your zero1_step().
// After each of 3 steps every rank's parameters must equal those of one
// process training on the whole batch with the same SGD-with-momentum, and the
// model (which only sees its views) must compute one process's loss. The
// verdicts are all-reduced, so all ranks agree; the first failing rank says
// what looks wrong. Then it prints what each rank held and sent.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "lessons/07_zero/lesson.h"
#include "lessons/lesson_check.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/zero/flat_params.h"
#include "parallel/zero/memory.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using lesson::agree;

namespace {

constexpr double kTimeout = 20, kLr = 0.1, kMu = 0.9;
constexpr int64_t B = 2, T = 15;

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
  // Every rank runs the same number of steps: one that stopped at its own
  // failure would leave the others waiting in the next collective.
  bool any_failed = false;
  for (int step = 1; step <= 3 && !any_failed; ++step) {
    Batch mine = data.train_batch(step, r, D, B, T),
          global = data.train_batch(step, 0, 1, D * B, T);
    model.zero_grad();
    Tensor loss = model.loss(mine.x, mine.y);
    loss.backward();
    Tensor flat_grads = layout.pack_grads(0);
    Tensor before = clone(flat_params);
    zero1_step(world, flat_params, flat_grads, momentum, kLr, kMu);
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
    any_failed = failed.data<int32_t>()[0] != 0;
  }
  if (r == 0) std::printf("%s", losses.c_str());
  if (!agree(world, why, "3 ZeRO-1 steps on 4 ranks = 3 SGD-momentum steps of one process"))
    return false;

  if (r == 0) {
    std::printf(
        "\nWhat each rank held (bytes):  parameters %s (full),  gradients %s (full),  "
        "momentum %s (its slice only: DDP would hold %s)\n",
        format_bytes(double(flat_params.nbytes())).c_str(), format_bytes(double(N * 4)).c_str(),
        format_bytes(double(momentum.nbytes())).c_str(), format_bytes(double(N * 4)).c_str());
    std::printf(
        "What each rank sent per step: reduce-scatter of %s bytes + all-gather of %s bytes "
        "= 2Ψ, the same as DDP's one all-reduce (= reduce-scatter + all-gather);\n"
        "ZeRO-3 all-gathers the parameters twice (forward and backward): 3Ψ.\n\n",
        format_bytes(double(N * 4)).c_str(), format_bytes(double(N * 4)).c_str());
    std::printf("%s\n", format_memory_formula_table(psi, {D}, 4).c_str());
    std::printf("%s", format_memory_formula_table(psi, {D}, 8).c_str());
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
