// expect: step 1: step() saw this batch's gradient PLUS what .grad held when train_step began
// Lesson 03, deliberately wrong: no zero_grad: .grad accumulates across steps.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  loss.backward();
  opt.step();  // BUG: .grad still holds the previous steps' gradients
  return loss.item();
}
