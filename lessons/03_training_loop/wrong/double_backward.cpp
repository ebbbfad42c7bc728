// expect: step 0: step() saw twice the gradient: backward() ran twice before step()
// Lesson 03, deliberately wrong: two forwards and two backwards before one step.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  loss.backward();
  ms::mean(ms::pow(model.forward(x) - y, 2.0)).backward();  // BUG: a second backward
  opt.step();
  return loss.item();
}
