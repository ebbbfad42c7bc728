// expect: you returned the loss AFTER the update
// Lesson 03, deliberately wrong: returns the loss of a second forward, after the update.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  loss.backward();
  opt.step();
  ms::NoGradGuard no_grad;
  return ms::mean(ms::pow(model.forward(x) - y, 2.0)).item();  // BUG: not the backpropagated loss
}
