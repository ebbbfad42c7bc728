// Lesson 02 reference solution: LayerNorm's backward (README question 2 derives it).
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_layernorm(const ms::Tensor& x, const ms::Tensor& weight, const ms::Tensor& bias,
                        double eps) {
  ms::Tensor y, xhat, rstd;
  {
    // One op, one Node: the forward's internal ops must not record their own.
    ms::NoGradGuard no_grad;
    ms::Tensor centered = x - ms::mean(x, {1}, /*keepdim=*/true);
    rstd = ms::pow(ms::mean(centered * centered, {1}, true) + eps, -0.5);
    xhat = centered * rstd;
    y = xhat * weight + bias;
  }
  if (ms::needs_grad({&x, &weight, &bias})) {
    // Save xhat and rstd, not x: every gradient is a function of them (and of weight), so the
    // backward recomputes no statistics. detach() avoids the cycle y -> Node -> y.
    auto backward = [xhat = ms::detach(xhat), rstd = ms::detach(rstd),
                     weight = ms::detach(weight)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      ms::Tensor dbias = ms::sum(g, {0});            // bias is broadcast over the rows: sum them
      ms::Tensor dweight = ms::sum(g * xhat, {0});   // y = xhat * weight + bias
      ms::Tensor dxhat = g * weight;
      // Through xhat = (x - mean)·rstd: the direct path, minus the path through the row mean,
      // minus the path through the row variance.
      ms::Tensor dx = rstd * (dxhat - ms::mean(dxhat, {1}, true) -
                              xhat * ms::mean(dxhat * xhat, {1}, true));
      return {dx, dweight, dbias};
    };
    ms::record(y, "my_layernorm", {x, weight, bias}, backward);
  }
  return y;
}
