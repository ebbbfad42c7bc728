// expect: backward(g): g is missing: you return ds/dx = s*(1-s)
// Lesson 02, deliberately wrong: returns ds/dx and forgets g.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      (void)g;
      return {s * (-s + 1.0)};  // BUG: ds/dx alone, without g
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
