#include "optim/loss_scaler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/kernels.h"

namespace ms {

namespace {

// Scales are powers of two (or a user's min_loss_scale): print them exactly,
// as integers when they are, not in ostream's 6-digit "1.04858e+06".
std::string num(double x) {
  return exact_str(x);
}

// The shortest decimal that reads back as x: a user's 1e39 prints as 1e+39,
// not 9.9999999999999994e+38.
std::string shortest(double x) {
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  return buf;
}

bool finite_positive(double x) {
  return std::isfinite(x) && x > 0;
}

}  // namespace

// ---------------------------------------------------------------- static ----

StaticLossScaler::StaticLossScaler(double scale) : scale_(scale) {
  MS_CHECK(std::isfinite(scale) && scale >= kMinStaticLossScale && scale <= kMaxStaticLossScale,
           "fp16.loss_scale (--loss-scale): a static loss scale must be in [2^-40, 2^40] = [",
           shortest(kMinStaticLossScale), ", ", num(kMaxStaticLossScale), "], got ",
           shortest(scale),
           ": fp16 holds magnitudes 2^-24 to 65504 (< 2^16), so above 2^40 every gradient fp16 "
           "can hold overflows once scaled (every step is skipped) and below 2^-40 every one "
           "falls below fp16's smallest subnormal (nothing trains); 0 enables dynamic loss "
           "scaling, powers of two "
           "unscale exactly");
}

bool StaticLossScaler::update(bool overflow) {
  ++cur_iter_;
  last_event_ = overflow ? str_cat("OVERFLOW! Skipping step. Static loss scale: ", num(scale_))
                         : std::string();
  return overflow;
}

LossScalerState StaticLossScaler::state() const {
  LossScalerState s;
  s.scale = scale_;
  s.cur_iter = cur_iter_;
  return s;
}

void StaticLossScaler::load_state(const LossScalerState& s) {
  MS_CHECK(finite_positive(s.scale) && s.cur_iter >= 0,
           "loss scaler state: static scale must be finite and > 0 and cur_iter >= 0, got scale ",
           num(s.scale), ", cur_iter ", s.cur_iter);
  scale_ = s.scale;
  cur_iter_ = s.cur_iter;
}

// --------------------------------------------------------------- dynamic ----

DynamicLossScaler::DynamicLossScaler(const LossScalerConfig& config) : c_(config) {
  MS_CHECK(c_.loss_scale == 0,
           "DynamicLossScaler: fp16.loss_scale must be 0 for dynamic loss scaling, got ",
           num(c_.loss_scale), " (use StaticLossScaler, or make_loss_scaler)");
  // DeepSpeedFP16Config's validator text, with the value.
  MS_CHECK(
      c_.loss_scale_window > 0,
      "fp16.loss_scale_window must be > 0 when dynamic loss scaling is enabled (loss_scale=0), "
      "got ",
      c_.loss_scale_window);
  // DeepSpeed accepts hysteresis 0 and then never halves (cur_hysteresis
  // counts down past 1 forever): refuse it.
  MS_CHECK(c_.hysteresis >= 1,
           "fp16.hysteresis must be >= 1 (the scale halves at the N-th overflow), got ",
           c_.hysteresis);
  MS_CHECK(finite_positive(c_.min_loss_scale), "fp16.min_loss_scale must be finite and > 0, got ",
           num(c_.min_loss_scale));
  // The loss is multiplied in f32: 2^127 is its largest power of two.
  MS_CHECK(c_.initial_scale_power <= 127,
           "fp16.initial_scale_power must be <= 127 (2^power must be a finite f32), got ",
           c_.initial_scale_power);
  s_.scale = std::ldexp(1.0, c_.initial_scale_power);
  // Below the minimum the first halving, max(scale/2, min), would RAISE the
  // scale; DeepSpeed does not check this.
  MS_CHECK(s_.scale >= c_.min_loss_scale, "fp16.initial_scale_power ", c_.initial_scale_power,
           " gives a loss scale of ", num(s_.scale), ", below fp16.min_loss_scale ",
           num(c_.min_loss_scale), "; raise initial_scale_power or lower min_loss_scale");
  s_.cur_hysteresis = c_.hysteresis;  // DeepSpeed's delayed_shift
}

bool DynamicLossScaler::update(bool overflow) {
  last_event_.clear();
  if (overflow) {
    if (c_.hysteresis == 1 || s_.cur_hysteresis == 1) {
      // Every rank agreed on `overflow`, so every rank throws this together.
      MS_CHECK(
          !(s_.scale == c_.min_loss_scale && c_.raise_error_at_min_scale),
          "Current loss scale already at minimum - cannot decrease scale anymore. Exiting run. "
          "(loss scale ",
          num(s_.scale),
          " = fp16.min_loss_scale; the gradients overflow even at the "
          "minimum: check the model and data, or lower fp16.min_loss_scale)");
      const double next = std::max(s_.scale / 2, c_.min_loss_scale);
      last_event_ = str_cat("OVERFLOW! Skipping step. Attempted loss scale: ", num(s_.scale),
                            ", reducing to ", num(next));
      s_.scale = next;
    } else {
      last_event_ = str_cat("OVERFLOW! Skipping step. Attempted loss scale: ", num(s_.scale),
                            ", but hysteresis is ", s_.cur_hysteresis, ". Reducing hysteresis to ",
                            s_.cur_hysteresis - 1);
      --s_.cur_hysteresis;
    }
    s_.last_overflow_iter = s_.cur_iter;
  } else {
    if (c_.consecutive_hysteresis) s_.cur_hysteresis = c_.hysteresis;
    // DynamicLossScaler.update_scale's test, (cur_iter - last_overflow_iter)
    // % scale_window == 0: the difference counts THIS clean step, so the
    // scale doubles on the window-th clean step in a row. (FP16_Optimizer.
    // _update_scale in fp16/fused_optimizer.py subtracts 1 and doubles on
    // the (window+1)-th; ZeRO 1-3 use DynamicLossScaler, and so do we.) On a
    // clean step the difference is >= 1: an overflow at cur_iter sets
    // last_overflow_iter = cur_iter and cur_iter then advances.
    if ((s_.cur_iter - s_.last_overflow_iter) % c_.loss_scale_window == 0) {
      if (!c_.consecutive_hysteresis) s_.cur_hysteresis = c_.hysteresis;
      s_.scale *= 2;
    }
  }
  ++s_.cur_iter;
  return overflow;
}

void DynamicLossScaler::load_state(const LossScalerState& s) {
  MS_CHECK(finite_positive(s.scale) && s.scale >= c_.min_loss_scale && s.cur_iter >= 0 &&
               s.last_overflow_iter >= -1 && s.last_overflow_iter < s.cur_iter &&
               s.cur_hysteresis >= 1 && s.cur_hysteresis <= c_.hysteresis,
           "loss scaler state: got scale ", num(s.scale), ", cur_iter ", s.cur_iter,
           ", last_overflow_iter ", s.last_overflow_iter, ", cur_hysteresis ", s.cur_hysteresis,
           "; valid: fp16.min_loss_scale (", num(c_.min_loss_scale),
           ") <= scale finite, -1 <= last_overflow_iter < cur_iter, 1 <= cur_hysteresis <= "
           "fp16.hysteresis (",
           c_.hysteresis, ")");
  s_ = s;
}

std::unique_ptr<LossScaler> make_loss_scaler(const LossScalerConfig& config) {
  // DeepSpeedFP16Config's validator text, with the value.
  MS_CHECK(config.loss_scale >= 0 && std::isfinite(config.loss_scale),
           "fp16.loss_scale (--loss-scale) must be 0 (dynamic loss scaling) or a static scale in "
           "[2^-40, 2^40], got ",
           shortest(config.loss_scale));
  if (config.loss_scale > 0) return std::make_unique<StaticLossScaler>(config.loss_scale);
  return std::make_unique<DynamicLossScaler>(config);
}

// -------------------------------------------------------------- overflow ----

bool has_overflow(const std::vector<Tensor>& grads) {
  for (const Tensor& g : grads) {
    if (!g.defined()) continue;
    // The inf/NaN test runs where the gradient lives (optim/kernels.h).
    if (optim_kernels::has_nonfinite(optim_kernels::contiguous_or_self(g))) return true;
  }
  return false;
}

double unscale_and_clip(const std::vector<Tensor>& grads, double loss_scale, double clip,
                        double norm) {
  MS_CHECK(finite_positive(loss_scale), "unscale_and_clip: loss_scale must be finite and > 0, got ",
           num(loss_scale));
  MS_CHECK(std::isfinite(norm) && norm >= 0, "unscale_and_clip: the gradient norm is ", num(norm),
           "; an inf/NaN norm means the gradients overflowed, and the step must be skipped "
           "(has_overflow, LossScaler::update) before unscaling");
  double combined = loss_scale;
  if (clip > 0) {
    const double factor = (norm / loss_scale + 1e-6) / clip;
    if (factor > 1) combined = factor * loss_scale;
  }
  NoGradGuard no_grad;
  for (const Tensor& g : grads) {
    if (!g.defined()) continue;
    MS_CHECK(g.dtype() == DType::F32,
             "unscale_and_clip: gradients must be the f32 master gradients, got ",
             dtype_name(g.dtype()), " of shape ", shape_str(g.shape()));
    Tensor t = g;
    // One rounding of 1/combined to f32, then a multiply: what DeepSpeed's
    // grad.data.mul_(1. / combined_scale) does on an fp32 tensor.
    mul_(t, 1.0 / combined);
  }
  return combined;
}

}  // namespace ms
