// expect: Hint: the loss has no graph: the forward ran under a NoGradGuard
// Lesson 03, deliberately wrong: the whole step under NoGradGuard: no graph to backward through.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  ms::NoGradGuard no_grad;  // BUG: the forward must record the graph
  opt.zero_grad();
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  loss.backward();
  opt.step();
  return loss.item();
}
