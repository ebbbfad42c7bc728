// expect: dweight has shape [4, 6], expected [6]
// expect: sum over the rows
// Lesson 02, deliberately wrong: forgets to sum dweight over the rows that share
// the weight.
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
      ms::Tensor dweight = g * xhat;
      ms::Tensor dxhat = g * weight;
      ms::Tensor dx = rstd * (dxhat - ms::mean(dxhat, {1}, true) - xhat * ms::mean(dxhat * xhat, {1}, true));
      return {dx, dweight, dbias};
    };
    ms::record(y, "my_layernorm", {x, weight, bias}, backward);
  }
  return y;
}
