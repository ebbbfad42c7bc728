// expect: backward(g): twice the right gradient: you return 2*g*s*(1-s)
// Lesson 02, deliberately wrong: a stray factor 2 (with g = 0.5 the old hint called this "g forgotten").
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      return {g * s * (-s + 1.0) * 2.0};  // BUG: a stray factor 2
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
