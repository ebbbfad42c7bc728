// Lesson 02 exercise: write the three gradients below, then run `make lesson L=02 TRY=1`.
// README question 2 derives them; this file has only the plan.
#include "lessons/02_autograd/lesson.h"

ms::Tensor my_layernorm(const ms::Tensor& x, const ms::Tensor& weight, const ms::Tensor& bias,
                        double eps) {
  ms::Tensor y, xhat, rstd;
  {
    // The forward's internal ops must not record nodes of their own: the whole op is one Node,
    // with the backward written below.
    ms::NoGradGuard no_grad;
    ms::Tensor centered = x - ms::mean(x, {1}, /*keepdim=*/true);          // (N, C)
    rstd = ms::pow(ms::mean(centered * centered, {1}, true) + eps, -0.5);  // (N, 1): 1/σ per row
    xhat = centered * rstd;                                                // (N, C)
    y = xhat * weight + bias;
  }
  if (ms::needs_grad({&x, &weight, &bias})) {
    // Save what backward needs, detached: capturing y would make y -> its Node -> y a cycle.
    auto backward = [xhat = ms::detach(xhat), rstd = ms::detach(rstd),
                     weight = ms::detach(weight)](const ms::Tensor& g) -> std::vector<ms::Tensor> {
      // g = dL/dy, (N, C). Build each gradient with ops (*, -, ms::sum, ms::mean over dims
      // {0} or {1} with keepdim, ...):
      //   dbias   (C):    how y moves with bias, summed over the rows that share it
      //   dweight (C):    the same for weight (y = xhat * weight + ...)
      //   dx      (N, C): through xhat = (x - mean) * rstd, where the row's mean and rstd
      //                   depend on every x of the row too (README question 2)
      // TODO: replace the throw with the three gradients.
      (void)g, (void)xhat, (void)rstd, (void)weight;  // delete this line once you use them
      throw ms::Error("TODO: write the backward of my_layernorm in lessons/02_autograd/exercise.cpp");
      // return {dx, dweight, dbias};
    };
    ms::record(y, "my_layernorm", {x, weight, bias}, backward);
  }
  return y;
}
