// Lesson 02 exercise: replace the TODO, then run `make lesson L=02 TRY=1`.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    // The forward's internal ops (neg, exp, add, div) must not record nodes of their own:
    // the whole op is one Node, with the backward written below.
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    // Save s, detached: capturing s itself would make s -> its Node -> s a reference cycle.
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      // TODO: g is dL/ds (same shape as s). Return {dL/dx}, one gradient per input,
      // built with ops (*, +, -, mul, neg, ...) from g and the saved s.
      (void)g;  // delete this line once you use g
      throw ms::Error("TODO: write the backward of my_sigmoid in lessons/02_autograd/exercise.cpp");
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
