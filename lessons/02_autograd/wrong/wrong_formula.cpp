// expect: backward(g): not g*s*(1-s): differentiate 1/(1+e^-x)
// Lesson 02, deliberately wrong: an unrelated formula, g*s*s: no named bug fits, so the generic hint.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      return {g * s * s};  // BUG: s^2 is not ds/dx
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
