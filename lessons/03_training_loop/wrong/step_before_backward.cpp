// expect: step 0: opt.step() ran before loss.backward(): it found .grad empty
// Lesson 03, deliberately wrong: step() before backward(): step 0 finds .grad empty, later steps
// apply the previous batch's gradient.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  opt.step();  // BUG: before backward
  opt.zero_grad();
  loss.backward();
  return loss.item();
}
