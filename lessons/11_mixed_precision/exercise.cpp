// Lesson 11 exercise: write the dynamic loss scaler and the fp16 step, then
// run `make lesson L=11 TRY=1`. The contracts are in lesson.h.
//
// Tools: std::ldexp(1.0, p) = 2^p; MS_CHECK(cond, "message") throws ms::Error;
//   ms::has_overflow(grads)       any inf/NaN in any tensor (optim/loss_scaler.h)
//   ms::to(t, ms::DType::F32)     a converted copy;  ms::mul(t, k)  t·k
//   master.set_grad(g)            what opt.step() will read as master's gradient
//   opt.params(), opt.set_lr(lr), opt.step();  sched.at(step)
//   ms::copy_(dst, src)           copies values, converting (rounding) to dst's dtype
#include "lessons/11_mixed_precision/lesson.h"

MyScaler make_scaler(const Fp16Config& config) {
  // TODO 1: the state before the first step (lesson.h).
  (void)config;
  throw ms::Error("TODO: write make_scaler in lessons/11_mixed_precision/exercise.cpp");
}

bool update_scale(MyScaler& s, bool overflow) {
  // TODO 2: DeepSpeed's update rule (lesson.h, README question 4): on overflow,
  //         hysteresis before halving, the floor and its error; on a clean step,
  //         doubling on the loss_scale_window-th clean step in a row since the last overflow.
  (void)s, (void)overflow;
  throw ms::Error("TODO: write update_scale in lessons/11_mixed_precision/exercise.cpp");
}

bool fp16_step(MyScaler& s, const std::vector<ms::Tensor>& grads16, ms::Optimizer& opt,
               std::vector<ms::Tensor>& params16, const ms::LRSchedule& sched, int64_t& lr_step) {
  // TODO 3: overflow? -> update_scale -> skip (what must NOT happen then?) or:
  //         masters' grads = the unscaled f32 gradients (unscaled by WHICH scale?),
  //         the LR of this step, opt.step(), and the fp16 weights from the masters.
  (void)s, (void)grads16, (void)opt, (void)params16, (void)sched, (void)lr_step;
  throw ms::Error("TODO: write fp16_step in lessons/11_mixed_precision/exercise.cpp");
}
