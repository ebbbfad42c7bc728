// expect: must throw DeepSpeed's "Current loss scale already at minimum
// Lesson 11, deliberately wrong: clamps at min_loss_scale silently instead of raising DeepSpeed's error.
#include <algorithm>
#include <cmath>

#include "lessons/11_mixed_precision/lesson.h"

MyScaler make_scaler(const Fp16Config& config) {
  MyScaler s;
  s.config = config;
  s.cur_scale = std::ldexp(1.0, config.initial_scale_power);
  s.cur_hysteresis = config.hysteresis;  // DeepSpeed's delayed_shift
  return s;
}

bool update_scale(MyScaler& s, bool overflow) {
  const Fp16Config& c = s.config;
  if (overflow) {
    if (c.hysteresis == 1 || s.cur_hysteresis == 1) {
      // Halving at the floor would change nothing and overflow forever: stop.
      // BUG: no error at the minimum: it clamps forever
      s.cur_scale = std::max(s.cur_scale / 2, c.min_loss_scale);
    } else {
      --s.cur_hysteresis;  // one overflow forgiven: a single bad batch does not halve
    }
    s.last_overflow_iter = s.cur_iter;
  } else {
    // cur_iter - last_overflow_iter counts this clean step too: the doubling
    // comes on the loss_scale_window-th clean step in a row.
    if ((s.cur_iter - s.last_overflow_iter) % c.loss_scale_window == 0) {
      s.cur_hysteresis = c.hysteresis;  // growing earns the tolerance back
      s.cur_scale *= 2;
    }
  }
  ++s.cur_iter;
  return overflow;
}

bool fp16_step(MyScaler& s, const std::vector<ms::Tensor>& grads16, ms::Optimizer& opt,
               std::vector<ms::Tensor>& params16, const ms::LRSchedule& sched, int64_t& lr_step) {
  const double scale = s.cur_scale;  // what backward multiplied by; update_scale may change it
  // Every step goes through the scaler, skipped or not: it counts the clean run.
  if (update_scale(s, ms::has_overflow(grads16))) return true;  // nothing moves, the LR waits
  const std::vector<ms::Tensor>& master = opt.params();
  for (size_t i = 0; i < master.size(); ++i)
    master[i].set_grad(ms::mul(ms::to(grads16[i], ms::DType::F32), 1.0 / scale));  // true grad
  opt.set_lr(sched.at(lr_step));
  opt.step();  // on the fp32 masters: updates far below an fp16 ulp still accumulate
  ++lr_step;
  for (size_t i = 0; i < master.size(); ++i) ms::copy_(params16[i], master[i]);  // round to fp16
  return false;
}
