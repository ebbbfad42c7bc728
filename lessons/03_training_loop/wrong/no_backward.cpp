// expect: step 0: loss.backward() was never called
// Lesson 03, deliberately wrong: no backward, so step() finds no gradient.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  opt.step();  // BUG: no loss.backward() before it
  return loss.item();
}
