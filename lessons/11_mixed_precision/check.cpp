// Lesson 11 grader (one process). Three parts, each building on the last:
//  1. make_scaler and update_scale against the library's DynamicLossScaler
//     on scripted sequences of overflows, step by step (scaler_traces.h).
//  2. fp16_step on crafted gradients, with SGD so every expected value is a
//     formula: a clean step, an overflow, and a step whose update doubles the
//     scale (so unscaling by the new scale shows).
//  3. A real fp16 run (fp16_run.h) with the learner's scaler and step against
//     the same run on the library's scaler, step by step; printed beside the
//     f32 baseline and the run without loss scaling. Then the measurements of
//     measure.h.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "lessons/11_mixed_precision/fp16_run.h"
#include "lessons/11_mixed_precision/lesson.h"
#include "lessons/11_mixed_precision/measure.h"
#include "lessons/11_mixed_precision/scaler_traces.h"
#include "lessons/lesson_check.h"

using namespace ms;
using namespace lesson11;
using lesson::fail;
using lesson::pass;

namespace {

// ---- 2. the step ----

double max_diff(const std::vector<Tensor>& a, const std::vector<std::vector<double>>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::vector<double> v = a[i].to_vector();
    for (size_t j = 0; j < v.size(); ++j) m = std::fmax(m, std::fabs(v[j] - b[i][j]));
  }
  return m;
}
std::vector<std::vector<double>> values(const std::vector<Tensor>& t) {
  std::vector<std::vector<double>> v;
  for (const Tensor& x : t) v.push_back(x.to_vector());
  return v;
}
// m - lr · g16 / div, elementwise.
std::vector<std::vector<double>> updated(const std::vector<std::vector<double>>& m,
                                         const std::vector<Tensor>& g16, double lr, double div) {
  std::vector<std::vector<double>> out = m;
  for (size_t i = 0; i < m.size(); ++i) {
    const std::vector<double> g = g16[i].to_vector();
    for (size_t j = 0; j < g.size(); ++j) out[i][j] -= lr * g[j] / div;
  }
  return out;
}

std::string diagnose_clean(const std::vector<Tensor>& master, const std::vector<Tensor>& p16,
                           const std::vector<std::vector<double>>& m0,
                           const std::vector<std::vector<double>>& p0,
                           const std::vector<Tensor>& g16, const LRSchedule& sched, int64_t lr0,
                           double scale, double scale_after) {
  const double lr = sched.at(lr0), tol = 1e-6;
  const auto want = updated(m0, g16, lr, scale);
  if (max_diff(master, want) <= tol) {
    for (size_t i = 0; i < master.size(); ++i)
      if (max_diff({p16[i]}, {to(master[i], DType::F16).to_vector()}) != 0)
        return "the masters are right, but params16 is not the masters rounded to fp16: after "
               "the update, copy each master into its fp16 weight (ms::copy_ rounds)";
    return "";
  }
  if (max_diff(master, m0) == 0)
    return max_diff(p16, p0) != 0
               ? "the fp32 masters did not move but the fp16 weights did: the update went to the "
                 "fp16 weights. Update the masters (opt.step() on their .grad), then round them "
                 "into params16 — small updates added to an fp16 weight round away (README "
                 "question 3)"
               : "nothing moved on a clean step: set each master's .grad and call opt.step()";
  if (max_diff(master, updated(m0, g16, lr, 1)) <= tol)
    return str_cat(
        "the masters moved by lr·g16: the gradients were not unscaled. backward "
        "computed the gradient of loss × ",
        num(scale), "; divide by that scale before the optimizer sees it");
  if (scale_after != scale && max_diff(master, updated(m0, g16, lr, scale_after)) <= tol)
    return str_cat("unscaled with the scale AFTER update_scale (", num(scale_after),
                   "): this step doubled it, but backward multiplied the loss by ", num(scale),
                   ", so the masters got half the true gradient. DeepSpeed's ZeRO-1/2 step() "
                   "does exactly this (stage_1_and_2.py: _update_scale, then "
                   "unscale_and_clip_grads by the new loss_scale) on each doubling step; this "
                   "lesson and minispeed unscale by the scale backward used, as PyTorch's "
                   "GradScaler does: read cur_scale before calling update_scale (README "
                   "question 2)");
  for (int64_t d : {int64_t(1), int64_t(-1)})
    if (lr0 + d >= 0 && max_diff(master, updated(m0, g16, sched.at(lr0 + d), scale)) <= tol)
      return str_cat("the update used the LR of schedule step ", lr0 + d, " (", sched.at(lr0 + d),
                     "), not lr_step = ", lr0, " (", lr, "): sched.at(lr_step), then lr_step += 1");
  return str_cat("the masters are off by up to ", max_diff(master, want),
                 " from master - lr·(g16 / scale) with lr = sched.at(", lr0, ") = ", lr, ", scale ",
                 num(scale));
}

void check_step() {
  const Fp16Config cfg{3, 1, 1, 1};  // scale 8; window 1: every clean step doubles it
  MyScaler s = make_scaler(cfg);
  DynamicLossScaler ref(library_config(3, 1, 1, 1));
  std::vector<Tensor> master = {from_vector({0.5, -1.25, 2.0, 3.0}, {4}),
                                from_vector({-0.75, 1.5}, {2})};
  std::vector<Tensor> p16 = {to(master[0], DType::F16), to(master[1], DType::F16)};
  SGD opt(master, 1.0);
  LRSchedule sched;
  sched.kind = LRSchedule::Kind::Cosine, sched.max_lr = 0.1, sched.min_lr = 0.01;
  sched.warmup = 3, sched.total_steps = 10;
  const std::vector<std::vector<double>> g_true = {{0.01, -0.02, 0.03, 0.005}, {-0.015, 0.025}};
  int64_t lr_step = 0;
  const std::string events = "COCC";
  for (size_t k = 0; k < events.size(); ++k) {
    const bool overflow = events[k] == 'O';
    const double scale = ref.loss_scale();
    std::vector<Tensor> g16;
    for (const auto& g : g_true) {
      std::vector<double> scaled;
      for (double v : g) scaled.push_back(v * scale);
      g16.push_back(from_vector(scaled, {int64_t(g.size())}, DType::F16));
    }
    if (overflow) g16[1] = from_vector({INFINITY, 0.5}, {2}, DType::F16);
    const auto m0 = values(master), p0 = values(p16);
    const int64_t lr0 = lr_step;
    const bool skipped = fp16_step(s, g16, opt, p16, sched, lr_step);
    ref.update(overflow);
    const std::string where = str_cat("fp16_step, step ", k, " (", overflow ? "overflow" : "clean",
                                      ", loss scale ", num(scale), "): ");
    if (skipped != overflow)
      fail(str_cat(where, "returned skipped = ", skipped,
                   "; a step is skipped exactly when its "
                   "gradients hold an inf or NaN (ms::has_overflow)"));
    if (s.cur_iter != ref.state().cur_iter || s.cur_scale != ref.loss_scale())
      fail(str_cat(where, "afterwards the scaler has cur_iter ", s.cur_iter, ", cur_scale ",
                   num(s.cur_scale), "; expected ", ref.state().cur_iter, ", ",
                   num(ref.loss_scale()),
                   ": call update_scale exactly once per step, skipped "
                   "or not (it counts the clean run)"));
    if (overflow) {
      if (max_diff(master, m0) != 0 || max_diff(p16, p0) != 0)
        fail(str_cat(where, "the weights changed on an overflow step (masters now ",
                     master[1].to_string(),
                     "): a skipped step must not touch the parameters or "
                     "the optimizer — DeepSpeed zeroes the gradients and returns"));
      if (lr_step != lr0)
        fail(str_cat(where, "lr_step went from ", lr0, " to ", lr_step,
                     ": the LR schedule advanced on a skipped step. DeepSpeed's engine steps the "
                     "lr_scheduler only when the optimizer did not overflow"));
    } else {
      const std::string why =
          diagnose_clean(master, p16, m0, p0, g16, sched, lr0, scale, ref.loss_scale());
      if (!why.empty()) fail(where + why);
      if (lr_step != lr0 + 1)
        fail(str_cat(where, "lr_step went from ", lr0, " to ", lr_step,
                     "; a step that updates advances the LR schedule by one"));
    }
  }
  pass(
      "fp16_step: unscales by the backward's scale, updates the fp32 masters and rounds them "
      "into the fp16 weights; an overflow step moves nothing and does not advance the LR");
}

// ---- 3. the real run ----

// Equal, or both NaN (the corrupted batch's loss).
bool same_loss(double a, double b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

void check_run() {
  std::printf(
      "\nthe fp16 run (fp16_run.h): a 3-layer MLP, AdamW lr %g cosine, %d steps of one "
      "%lld-sample micro-batch with its loss divided by gas = %lld; batch %d holds a corrupted "
      "input (1e6: inf in fp16)\n",
      kLr, kSteps, (long long)kN, (long long)kGas, kBadBatchStep);
  const Fp16Config cfg{kInitialScalePower, kWindow, 2, 1};
  MyScaler mine = make_scaler(cfg);
  const RunLog got =
      run_fp16([&](const std::vector<Tensor>& g, Optimizer& o, std::vector<Tensor>& p,
                   const LRSchedule& sc, int64_t& l) { return fp16_step(mine, g, o, p, sc, l); },
               [&] { return mine.cur_scale; });
  DynamicLossScaler dyn(library_config(kInitialScalePower, kWindow, 2, 1));
  const RunLog want = run_fp16(
      [&](const std::vector<Tensor>& g, Optimizer& o, std::vector<Tensor>& p, const LRSchedule& sc,
          int64_t& l) { return reference_step(dyn, g, o, p, sc, l); },
      [&] { return dyn.loss_scale(); });
  if (!got.error.empty())
    fail(
        str_cat("the run stopped at step ", got.skipped.size(), " with an ms::Error: ", got.error));
  for (size_t k = 0; k < want.loss.size(); ++k)
    if (!same_loss(got.loss[k], want.loss[k]) || got.scale[k] != want.scale[k] ||
        got.skipped[k] != want.skipped[k] || got.lr_step[k] != want.lr_step[k])
      fail(str_cat("the run diverged from the library's at step ", k, ": reference loss ",
                   num(want.loss[k]), " at loss scale ", num(want.scale[k]), ", skipped ",
                   want.skipped[k], ", LR step ", want.lr_step[k], "; yours ", num(got.loss[k]),
                   " at ", num(got.scale[k]), ", skipped ", got.skipped[k], ", LR step ",
                   got.lr_step[k]));

  StaticLossScaler one(1.0);
  const RunLog plain = run_fp16(
      [&](const std::vector<Tensor>& g, Optimizer& o, std::vector<Tensor>& p, const LRSchedule& sc,
          int64_t& l) { return reference_step(one, g, o, p, sc, l); },
      [&] { return 1.0; });
  const RunLog f32 = run_fp32();
  std::printf(
      "   step | f32: loss | fp16, no loss scale: loss, weight grads = 0 | fp16 + your "
      "scaler: loss, scale\n");
  for (int k : {0, 5, 10, 15, 20, 25, 30, 40, 60, 80, 119})
    std::printf("   %4d | %9.4f | %24.4f %9.1f%%          | %11.4f   2^%d%s\n", k, f32.loss[k],
                plain.loss[k], 100 * plain.zero_frac[k], got.loss[k], int(std::log2(got.scale[k])),
                got.skipped[k] ? " (overflow: skipped)" : "");
  std::string skips;
  int n = 0;
  for (size_t k = 0; k < got.skipped.size(); ++k)
    if (got.skipped[k]) skips += str_cat(n++ ? ", " : "", k);
  std::printf(
      "   held-out loss after 20 / 40 / %d steps: f32 %.4f / %.4f / %.4f, fp16 unscaled "
      "%.4f / %.4f / %.4f, fp16 + your scaler %.4f / %.4f / %.4f\n",
      kSteps, f32.eval[1], f32.eval[3], f32.eval.back(), plain.eval[1], plain.eval[3],
      plain.eval.back(), got.eval[1], got.eval[3], got.eval.back());
  std::printf("   your scaler skipped %d steps (%s); the LR schedule took %lld steps\n", n,
              skips.c_str(), (long long)got.lr_step.back());
  pass(
      "the fp16 run with your scaler and step matches the library's DynamicLossScaler run "
      "at every step (loss, scale, skipped steps, LR position)");
  std::printf("\nmeasured beside the exercise (README questions 1-7):\n");
  measure_gpt_gradient();
  measure_master_weights(got);
  measure_bytes(got);
  measure_reduction_rounding();
}

}  // namespace

int main() {
  // Small tensors: on a shared 2-core machine, OpenMP's threads cost more
  // than they save here, and one thread makes the runs deterministic.
  omp_set_num_threads(1);
  return lesson::run_checks([] {
    check_scaler();
    check_step();
    check_run();
  });
}
