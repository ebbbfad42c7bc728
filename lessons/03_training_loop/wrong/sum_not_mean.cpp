// expect: step() saw 64 times the MSE gradient
// expect: you took the sum, not the mean (x B = 64)
// Lesson 03, deliberately wrong: the loss is the sum, not the mean: a B-times larger gradient.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();
  ms::Tensor loss = ms::sum(ms::pow(model.forward(x) - y, 2.0));  // BUG: sum
  loss.backward();
  opt.step();
  return loss.item() / static_cast<double>(x.size(0));
}
