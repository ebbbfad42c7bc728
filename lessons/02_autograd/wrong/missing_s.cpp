// expect: backward(g): the factor s is missing: you return g*(1-s)
// Lesson 02, deliberately wrong: drops the factor s.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      return {g * (-s + 1.0)};  // BUG: ds/dx taken as 1 - s
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
