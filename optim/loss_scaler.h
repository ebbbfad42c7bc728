// fp16 loss scaling (Micikevicius et al. 2018, "Mixed Precision Training"):
// fp16 rounds anything below 2^-24 to zero (and keeps few bits below its
// smallest normal, 2^-14), so small gradients vanish unless the loss is
// multiplied by a large scale S before backward; the fp32 master
// gradients are then divided by S before the optimizer sees them. Too large
// an S overflows to inf/NaN instead, so the dynamic scaler lowers S when that
// happens (and the step is skipped) and raises it again after a run of clean
// steps. bf16 has fp32's exponent range and needs no scaling (DeepSpeed only
// scales for float16), though overflow is still checked.
//
// The update rule is DeepSpeed's
// deepspeed/runtime/fp16/loss_scaler.py::DynamicLossScaler.update_scale, state
// for state, so a ds_config.json "fp16" section behaves here as it does there.
//
// What the caller (the engine) does each optimizer step, as DeepSpeed's
// ZeRO-1/2 step() does:
//   1. backward on loss · loss_scale();
//   2. local = has_overflow(grads); overflow = agree_on_overflow(local, {dp, tp, pp})
//      (parallel/comm/overflow.h) so every rank takes the same decision;
//   3. skip = scaler.update(overflow) — EVERY step, skipped or not;
//   4. if skip: zero the gradients, do not touch parameters or optimizer
//      state, and do NOT advance the LR schedule (DeepSpeed's engine steps
//      its lr_scheduler only when not optimizer.overflow; it still counts the
//      step in global_steps and in skipped_steps);
//      else: norm = global norm of the (still scaled) gradients,
//      unscale_and_clip(grads, loss_scale, clip, norm), optimizer step,
//      schedule step.
// Unscale with the scale the backward used: read loss_scale() BEFORE update()
// changes it. This is PyTorch GradScaler's order (unscale_ in step(), then
// update()), and NOT DeepSpeed's: ZeRO-1/2's step()
// (runtime/zero/stage_1_and_2.py) calls _update_scale first and then
// unscale_and_clip_grads, which divides by self.loss_scale, the NEW scale;
// so on a step where the scale doubles DeepSpeed applies half the gradient
// and tests the clip threshold against half the norm, while its own
// reported _global_grad_norm divides by prev_scale. minispeed keeps the
// update exact (the optimizer sees the true gradient on every applied step,
// and the reported norm and the clip decision agree); it departs from
// DeepSpeed on doubling steps only, by exactly that factor 2
// (docs/architecture.md, "Mixed precision").
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace ms {

// The fp16 section of ds_config.json, with DeepSpeed's names and defaults
// (deepspeed/runtime/precision_config.py::DeepSpeedFP16Config).
struct LossScalerConfig {
  double loss_scale = 0;                // 0: dynamic; > 0: this static scale
  int initial_scale_power = 16;         // dynamic: start at 2^initial_scale_power
  int64_t loss_scale_window = 1000;     // clean steps between doublings
  int hysteresis = 2;                   // overflows tolerated before the first halving
  bool consecutive_hysteresis = false;  // refill hysteresis on every clean step
  double min_loss_scale = 1;
  bool raise_error_at_min_scale = true;  // DeepSpeed's default; false clamps silently
};

// What a scaler remembers; save it in a checkpoint to resume bit-exactly.
struct LossScalerState {
  double scale = 1;
  int64_t cur_iter = 0;             // update() calls so far
  int64_t last_overflow_iter = -1;  // cur_iter of the last overflow (-1: none yet)
  int cur_hysteresis = 1;           // overflows left before the next halving
  bool operator==(const LossScalerState&) const = default;
};

class LossScaler {
 public:
  virtual ~LossScaler() = default;
  // Multiply the loss by this before backward; divide the gradients by it.
  virtual double loss_scale() const = 0;
  // Records one optimizer step whose gradients did (not) overflow — after
  // every rank agreed on `overflow` — and returns whether the step must be
  // skipped (= overflow, for both kinds: DeepSpeed skips an overflowing step
  // under a static scale too). May throw ms::Error (dynamic, at the minimum).
  virtual bool update(bool overflow) = 0;
  virtual bool dynamic() const = 0;
  virtual LossScalerState state() const = 0;
  virtual void load_state(const LossScalerState& s) = 0;
  // The log line for the last update(), "" after a clean step; for the
  // dynamic scaler DeepSpeed's rank-0 line, e.g. "OVERFLOW! Skipping step.
  // Attempted loss scale: 65536, reducing to 32768". The caller adds the rank.
  const std::string& last_event() const { return last_event_; }

 protected:
  std::string last_event_;
};

// The static scales we accept (DeepSpeed accepts any float; a scale of 1e39
// is inf in f32 and skips every step, 1e-300 is 0 and gives NaN). fp16 holds
// magnitudes from 2^-24 (its smallest subnormal) to 65504 (< 2^16), 40
// binades: a scale above 2^40 overflows every gradient fp16 could hold
// unscaled (|g| >= 2^-24 -> |S·g| >= 2^16, inf), so every step is skipped;
// one below 2^-40 puts every such gradient (|g| <= 65504) below 2^-24, where
// fp16 rounds it to 0 or to its one smallest subnormal, so nothing trains. Both bounds are f32-exact, as are their inverses.
inline constexpr double kMinStaticLossScale = 0x1p-40;
inline constexpr double kMaxStaticLossScale = 0x1p40;

// deepspeed/runtime/fp16/loss_scaler.py::LossScaler: a constant scale.
class StaticLossScaler : public LossScaler {
 public:
  explicit StaticLossScaler(double scale);
  double loss_scale() const override { return scale_; }
  bool update(bool overflow) override;
  bool dynamic() const override { return false; }
  LossScalerState state() const override;
  void load_state(const LossScalerState& s) override;

 private:
  double scale_;
  int64_t cur_iter_ = 0;
};

// deepspeed/runtime/fp16/loss_scaler.py::DynamicLossScaler (scale_factor 2).
// update(overflow):
//   overflow: if hysteresis is used up (delayed_shift == 1 or cur_hysteresis
//     == 1): at min_loss_scale throw DeepSpeed's "Current loss scale already
//     at minimum - cannot decrease scale anymore. Exiting run.", else
//     scale = max(scale / 2, min_loss_scale); otherwise cur_hysteresis -= 1.
//     Then last_overflow_iter = cur_iter.
//     Every overflow, halving or not, restarts the clean count.
//   clean: if consecutive_hysteresis, cur_hysteresis = hysteresis.
//     If (cur_iter - last_overflow_iter) % window == 0: scale *= 2 (and,
//     when not consecutive, refill cur_hysteresis = hysteresis). So the
//     scale doubles on the window-th clean step in a row after an overflow
//     (the start counts as an overflow at iteration -1: with window 1000
//     the first doubling is at cur_iter 999, the 1000th update), then every
//     window clean steps. There is no maximum scale.
//   cur_iter += 1 on every call, overflow or clean.
// Not FP16_Optimizer._update_scale (fp16/fused_optimizer.py, the non-ZeRO
// fp16 path): that one has no hysteresis and doubles one step later
// (stable = cur_iter - last_overflow_iter - 1, stable > 0 and
// stable % window == 0). PyTorch's GradScaler grows on the same step as
// DynamicLossScaler (its growth_tracker reaches growth_interval on the
// growth_interval-th clean step) and has no hysteresis either.
class DynamicLossScaler : public LossScaler {
 public:
  explicit DynamicLossScaler(const LossScalerConfig& config);
  double loss_scale() const override { return s_.scale; }
  bool update(bool overflow) override;
  bool dynamic() const override { return true; }
  LossScalerState state() const override { return s_; }
  void load_state(const LossScalerState& s) override;

 private:
  LossScalerConfig c_;
  LossScalerState s_;
};

// DeepSpeed's CreateLossScaler: static when config.loss_scale > 0, else
// dynamic. Bad values are ms::Errors naming the fp16.* key.
std::unique_ptr<LossScaler> make_loss_scaler(const LossScalerConfig& config);

// True if any element of any gradient is +inf, -inf or NaN (f32, f64, bf16,
// f16; undefined tensors are skipped, as DeepSpeed skips p.grad None). Checked
// element by element like ZeRO's isinf|isnan, not through a sum (the
// non-ZeRO CheckOverflow sums, which also flags finite grads whose sum
// overflows). Local only: see agree_on_overflow for the ranks' decision.
bool has_overflow(const std::vector<Tensor>& grads);

// DeepSpeed's fused unscale_and_clip_grads (ZeRO-1/2, FP16_Optimizer): one
// multiply by 1/combined_scale instead of an unscale pass and a clip pass,
//   combined_scale = loss_scale · max(1, (norm/loss_scale + 1e-6) / clip)
// (clip <= 0: no clipping). `norm` is the global L2 norm of the SCALED
// gradients, all ranks' shards together: it is computed before unscaling, so
// the grads are read once for the norm and written once here, and
// norm/loss_scale is the true norm because scaling is linear. Report
// norm / loss_scale as the gradient norm. Grads must be f32 (the master
// gradients); returns combined_scale.
double unscale_and_clip(const std::vector<Tensor>& grads, double loss_scale, double clip,
                        double norm);

}  // namespace ms
