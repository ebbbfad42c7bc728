// expect: dx is missing the -xhat·mean(dxhat·xhat) term
// Lesson 02, deliberately wrong: drops the path through the row variance.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_layernorm(const ms::Tensor& x, const ms::Tensor& weight, const ms::Tensor& bias,
                        double eps) {
  ms::Tensor y, xhat, rstd;
  {
    ms::NoGradGuard no_grad;
    ms::Tensor centered = x - ms::mean(x, {1}, true);
    rstd = ms::pow(ms::mean(centered * centered, {1}, true) + eps, -0.5);
    xhat = centered * rstd;
    y = xhat * weight + bias;
  }
  if (ms::needs_grad({&x, &weight, &bias})) {
    auto backward = [xhat = ms::detach(xhat), rstd = ms::detach(rstd),
                     weight = ms::detach(weight)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      ms::Tensor dbias = ms::sum(g, {0});
      ms::Tensor dweight = ms::sum(g * xhat, {0});
      ms::Tensor dxhat = g * weight;
      ms::Tensor dx = rstd * (dxhat - ms::mean(dxhat, {1}, true));
      return {dx, dweight, dbias};
    };
    ms::record(y, "my_layernorm", {x, weight, bias}, backward);
  }
  return y;
}
