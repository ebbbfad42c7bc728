// Lesson 11: a real fp16 training run, built from library ops. A 3-layer MLP
// (32 -> 64 -> 64 -> 16, GELU) learns to tell 16 Gaussian clusters apart,
// with AdamW on fp32 master weights. "fp16" means what a GPU's fp16 training
// stores: the weights the forward reads, every activation, every activation
// gradient and every weight gradient are rounded to IEEE binary16 (round16);
// the CPU kernels compute in f32 between roundings, as a tensor core
// accumulates in f32 (Micikevicius et al. 2018, §3).
//
// Why its gradients are small: each step is one micro-batch of kN = 1024
// points out of a batch of kGas = 2048 micro-batches (2.1M samples; GPT-3
// trained on 3.2M-token batches), and DeepSpeed's engine.backward divides the
// micro-batch's loss by gradient_accumulation_steps before backward. So each
// sample's gradient carries 1/(kN·kGas), as in a real large-batch run. We run
// one micro-batch per step to stay fast; AdamW, which divides by the
// gradient's own running RMS, trains the f32 baseline the same at any such
// factor, so only fp16's range feels it.
//
// The same loop runs the learner's scaler and fp16_step, and the library's
// DynamicLossScaler with a reference step: the two must agree at every step.
#pragma once
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "tensor/factory.h"
#include "tensor/random.h"

namespace lesson11 {

using namespace ms;

// The values of to(to(x, DType::F16), DType::F32), in one pass, in f32.
inline Tensor rounded16(const Tensor& x) {
  Tensor y = clone(contiguous(detach(x)));
  float* p = y.host_data<float>();
  for (int64_t i = 0, n = y.numel(); i < n; ++i) p[i] = f16_to_f32(f32_to_f16(p[i]));
  return y;
}
// x stored in fp16. Backward rounds the incoming gradient to fp16 too: an
// fp16 backward's activation gradient, where the small values are lost.
inline Tensor round16(const Tensor& x) {
  Tensor y = rounded16(x);
  if (needs_grad({&x}))
    record(y, "round16", {x}, [](const Tensor& g) { return std::vector<Tensor>{rounded16(g)}; });
  return y;
}

constexpr int64_t kIn = 32, kHidden = 64, kClasses = 16, kN = 1024, kGas = 2048;
constexpr int kSteps = 120;
constexpr int kBadBatchStep = 60;  // one corrupted input in this batch: inf in fp16
constexpr int kProbeStep = 100;    // where the lost-update probe looks
constexpr double kLr = 1e-2;
// The learner's run: starts high enough that the scale must come down as the
// gradients grow, and a short window so it climbs back within the run.
constexpr int kInitialScalePower = 32;
constexpr int64_t kWindow = 20;

// (W, b) of the three layers: W1 [32, 64], b1 [64], W2 [64, 64], b2 [64],
// W3 [64, 16], b3 [16].
inline std::vector<Tensor> init_params() {
  Generator gen(1);
  const int64_t dims[] = {kIn, kHidden, kHidden, kClasses};
  std::vector<Tensor> p;
  for (int l = 0; l < 3; ++l) {
    p.push_back(randn({dims[l], dims[l + 1]}, gen, 0, 0.02));  // GPT-2's init std
    p.push_back(zeros({dims[l + 1]}));
  }
  return p;
}

struct Data {
  Tensor x, y;  // (N, 32) f32, (N) i32
};
// Micro-batch `step` (step -1: the held-out evaluation batch): labels
// uniform over 16 classes, x = the class's centre + N(0, 1) noise.
inline Data make_batch(int step) {
  static const Tensor centers = [] {
    Generator g(7);
    return randn({kClasses, kIn}, g);  // (16, 32)
  }();
  Generator gen(1000 + uint64_t(step + 1));
  std::vector<int32_t> labels(kN);
  for (int32_t& l : labels) l = int32_t(gen.next_u64() % kClasses);
  Data b;
  b.y = from_vector(labels, {kN});
  b.x = randn({kN, kIn}, gen);
  float* x = b.x.host_data<float>();
  const float* c = centers.host_data<float>();
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t j = 0; j < kIn; ++j) x[i * kIn + j] += c[labels[i] * kIn + j];
  if (step == kBadBatchStep) x[5] = 1e6f;  // beyond fp16's 65504: inf in the forward
  return b;
}

// The mean cross-entropy, with fp16 weights and activations if `fp16`.
inline Tensor forward_loss(const std::vector<Tensor>& w, const Data& b, bool fp16) {
  auto r = [fp16](const Tensor& t) { return fp16 ? round16(t) : t; };
  Tensor h = r(b.x);
  h = r(gelu(linear(h, w[0], w[1])));                   // (N, 64)
  h = r(gelu(linear(h, w[2], w[3])));                   // (N, 64)
  return cross_entropy(r(linear(h, w[4], w[5])), b.y);  // logits (N, 16) in fp16; loss f32
}

// Forward and backward of one micro-batch from `weights` (f16: an fp16 run,
// else f32), the loss multiplied by scale / kGas. Returns the mean loss;
// `grads` gets one gradient per weight in the weights' dtype.
inline double forward_backward(const std::vector<Tensor>& weights, const Data& b, double scale,
                               std::vector<Tensor>& grads) {
  const bool fp16 = weights[0].dtype() == DType::F16;
  std::vector<Tensor> w;
  for (const Tensor& p : weights) {
    Tensor leaf = fp16 ? to(p, DType::F32) : clone(p);
    leaf.set_requires_grad(true);
    w.push_back(leaf);
  }
  Tensor loss = forward_loss(w, b, fp16);
  mul(loss, scale / double(kGas)).backward();
  grads.clear();
  for (const Tensor& l : w) grads.push_back(fp16 ? to(l.grad(), DType::F16) : l.grad());
  return loss.item();
}

// The held-out loss of the fp32 masters, in f32.
inline double eval_loss(const std::vector<Tensor>& master) {
  static const Data held_out = make_batch(-1);
  NoGradGuard no_grad;
  return forward_loss(master, held_out, false).item();
}

inline LRSchedule schedule() {
  LRSchedule s;
  s.kind = LRSchedule::Kind::Cosine;
  s.max_lr = kLr;
  s.min_lr = kLr / 10;
  s.warmup = 10;
  s.total_steps = kSteps;
  return s;
}

inline double zero_fraction(const std::vector<Tensor>& grads) {
  int64_t zeros = 0, n = 0;
  for (const Tensor& g : grads)
    for (double v : g.to_vector()) zeros += v == 0, ++n;
  return double(zeros) / double(n);
}

// What one run logged, per step.
struct RunLog {
  std::vector<double> loss, scale, zero_frac;  // scale: what the step's backward used
  std::vector<bool> skipped;
  std::vector<int64_t> lr_step;  // the LR schedule's position after the step
  std::vector<double> eval;      // held-out loss after steps 9, 19, ...
  std::string error;             // the ms::Error that ended the run, if one did
  int64_t num_params = 0;
  size_t bytes_params16 = 0, bytes_grads16 = 0, bytes_master = 0, bytes_optimizer = 0;
  double lost_updates = 0;  // at kProbeStep: the fraction of the update fp16 weights lose
};

// The f32 baseline: AdamW on f32 weights, no rounding anywhere. f32 does not
// overflow on the corrupted batch; it skips that batch anyway, so it takes the
// updates a good fp16 run takes.
inline RunLog run_fp32() {
  RunLog log;
  std::vector<Tensor> master = init_params(), grads;
  AdamW opt(master, kLr, 0.9, 0.999, 1e-8, 0.0);
  const LRSchedule sched = schedule();
  int64_t lr_step = 0;
  for (int step = 0; step < kSteps; ++step) {
    log.loss.push_back(forward_backward(master, make_batch(step), 1.0, grads));
    log.scale.push_back(1);
    log.zero_frac.push_back(zero_fraction(grads));
    log.skipped.push_back(step == kBadBatchStep);
    if (!log.skipped.back()) {
      for (size_t i = 0; i < master.size(); ++i) master[i].set_grad(grads[i]);
      opt.set_lr(sched.at(lr_step++));
      opt.step();
    }
    log.lr_step.push_back(lr_step);
    if (step % 10 == 9) log.eval.push_back(eval_loss(master));
  }
  return log;
}

// One optimizer step of an fp16 run (the learner's fp16_step on their
// scaler, or reference_step), and the loss scale the next backward uses.
using StepFn =
    std::function<bool(const std::vector<Tensor>& grads16, Optimizer& opt,
                       std::vector<Tensor>& params16, const LRSchedule& sched, int64_t& lr_step)>;
inline RunLog run_fp16(const StepFn& step_fn, const std::function<double()>& scale_fn) {
  RunLog log;
  std::vector<Tensor> master = init_params(), params16, grads16;
  for (const Tensor& m : master) params16.push_back(to(m, DType::F16));
  AdamW opt(master, kLr, 0.9, 0.999, 1e-8, 0.0);
  const LRSchedule sched = schedule();
  int64_t lr_step = 0;
  for (int step = 0; step < kSteps; ++step) {
    const double scale = scale_fn();
    log.loss.push_back(forward_backward(params16, make_batch(step), scale, grads16));
    log.scale.push_back(scale);
    log.zero_frac.push_back(zero_fraction(grads16));
    std::vector<Tensor> before;
    if (step == kProbeStep)
      for (const Tensor& m : master) before.push_back(clone(m));
    try {
      log.skipped.push_back(step_fn(grads16, opt, params16, sched, lr_step));
    } catch (const Error& e) {
      log.error = e.what();
      break;
    }
    log.lr_step.push_back(lr_step);
    if (step % 10 == 9) log.eval.push_back(eval_loss(master));
    if (step == kProbeStep) {
      // Apply this step's master update to the fp16 weights instead: which
      // elements would not move at all?
      int64_t lost = 0, moved = 0;
      for (size_t i = 0; i < master.size(); ++i) {
        const std::vector<double> b = before[i].to_vector(), a = master[i].to_vector();
        for (size_t j = 0; j < a.size(); ++j) {
          if (a[j] == b[j]) continue;
          const float p16 = f16_to_f32(f32_to_f16(float(b[j])));
          lost += f16_to_f32(f32_to_f16(float(p16 + (a[j] - b[j])))) == p16;
          ++moved;
        }
      }
      log.lost_updates = moved ? double(lost) / double(moved) : 0;
    }
  }
  for (const Tensor& p : params16) log.bytes_params16 += p.nbytes(), log.num_params += p.numel();
  for (const Tensor& g : grads16) log.bytes_grads16 += g.nbytes();
  for (const Tensor& m : master) log.bytes_master += m.nbytes();
  log.bytes_optimizer = opt.state_bytes();
  return log;
}

// The reference fp16 step on the library's scaler, in the order DeepSpeed's
// ZeRO-1/2 step and engine use (optim/loss_scaler.h, steps 1-4).
inline bool reference_step(LossScaler& scaler, const std::vector<Tensor>& grads16, Optimizer& opt,
                           std::vector<Tensor>& params16, const LRSchedule& sched,
                           int64_t& lr_step) {
  const double scale = scaler.loss_scale();
  if (scaler.update(has_overflow(grads16))) return true;
  std::vector<Tensor> master = opt.params(), grads;
  for (size_t i = 0; i < master.size(); ++i) {
    master[i].set_grad(to(grads16[i], DType::F32));
    grads.push_back(master[i].grad());
  }
  unscale_and_clip(grads, scale, 0, 0);  // no clipping: the norm is not read
  opt.set_lr(sched.at(lr_step++));
  opt.step();
  for (size_t i = 0; i < master.size(); ++i) copy_(params16[i], master[i]);
  return false;
}

inline LossScalerConfig library_config(int power, int64_t window, int hysteresis,
                                       double min_scale) {
  LossScalerConfig c;
  c.initial_scale_power = power;
  c.loss_scale_window = window;
  c.hysteresis = hysteresis;
  c.min_loss_scale = min_scale;
  return c;
}

}  // namespace lesson11
