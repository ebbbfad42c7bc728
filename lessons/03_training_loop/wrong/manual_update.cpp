// expect: step 0: the parameters changed but opt.step() was never called
// Lesson 03, deliberately wrong: a hand-written SGD update instead of opt.step().
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  loss.backward();
  ms::NoGradGuard no_grad;
  for (ms::Tensor p : model.parameters()) ms::add_(p, p.grad(), -0.1);  // BUG: not opt.step()
  return loss.item();
}
