// expect: step 0: step() saw twice the gradient: the loss was doubled
// Lesson 03, deliberately wrong: the loss is multiplied by 2 before backward.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  (loss * 2.0).backward();  // BUG: twice the loss, twice the gradient
  opt.step();
  return loss.item();
}
