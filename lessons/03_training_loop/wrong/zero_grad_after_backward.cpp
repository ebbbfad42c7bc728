// expect: step 0: zero_grad() ran between loss.backward() and opt.step()
// Lesson 03, deliberately wrong: zero_grad() between backward() and step(): nothing is learned.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  ms::Tensor loss = ms::mean(ms::pow(model.forward(x) - y, 2.0));
  loss.backward();
  opt.zero_grad();  // BUG: erases the gradient step() needs
  opt.step();
  return loss.item();
}
