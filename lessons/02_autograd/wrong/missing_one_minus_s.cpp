// expect: backward(g): the factor (1-s) is missing: you return g*s
// Lesson 02, deliberately wrong: drops the factor (1-s).
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      return {g * s};  // BUG: ds/dx taken as s
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
