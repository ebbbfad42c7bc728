// Lesson 02 reference solution.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_sigmoid(const ms::Tensor& x) {
  ms::Tensor s;
  {
    // One op, one Node: the forward's internal ops must not record their own.
    ms::NoGradGuard no_grad;
    s = ms::div(ms::ones_like(x), ms::add(ms::exp(ms::neg(x)), 1.0));
  }
  if (ms::needs_grad({&x})) {
    // Save the output, not the input: ds/dx = s(1 - s) needs nothing else and no second exp.
    // detach() avoids the reference cycle s -> Node -> s.
    auto backward = [s = ms::detach(s)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      return {g * s * (-s + 1.0)};  // chain rule: dL/dx = dL/ds * s * (1 - s)
    };
    ms::record(s, "my_sigmoid", {x}, backward);
  }
  return s;
}
