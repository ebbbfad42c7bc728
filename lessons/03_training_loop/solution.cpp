// Lesson 03 reference solution.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  opt.zero_grad();                     // .grad accumulates across backward() calls: clear it first
  ms::Tensor pred = model.forward(x);  // grad mode is on: the forward records the graph
  ms::Tensor loss = ms::mean(ms::pow(pred - y, 2.0));
  loss.backward();  // .grad of every parameter = dloss/dparam for this batch
  opt.step();       // updates under no-grad, after backward, exactly once
  return loss.item();
}
