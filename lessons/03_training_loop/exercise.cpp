// Lesson 03 exercise: replace the TODO, then run `make lesson L=03 TRY=1`.
#include "lessons/03_training_loop/lesson.h"

double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y) {
  // TODO: the five lines of every training loop, in the right order:
  //   1. clear the gradients the previous step left in .grad (they accumulate),
  //   2. forward: pred = model.forward(x)            (grad mode on: this records the graph),
  //   3. loss = mean((pred - y)^2)                   (ms::mean, ms::pow or *, -),
  //   4. backward: fills .grad of every parameter,
  //   5. opt.step(): the update (the optimizer runs it under no-grad itself).
  // Return loss.item().
  (void)model, (void)opt, (void)x, (void)y;  // delete this line once you use them
  throw ms::Error("TODO: write train_step in lessons/03_training_loop/exercise.cpp");
}
