#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"

namespace ms {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, double eps, double atol, double rtol) {
  for (const Tensor& t : inputs)
    MS_CHECK(t.dtype() == DType::F64 || t.dtype() == DType::I32,
             "gradcheck: inputs must be f64 "
             "(finite differences in f32 are too noisy), got ",
             dtype_name(t.dtype()), " ", shape_str(t.shape()));
  Tensor probe;
  {
    NoGradGuard no_grad;
    probe = f(inputs);
  }
  Generator gen(1234);
  Tensor weights = uniform(probe.shape(), gen, 0.5, 1.5, DType::F64).to(probe.device());
  auto objective = [&](const std::vector<Tensor>& xs) { return sum(mul(f(xs), weights)); };

  for (const Tensor& t : inputs)
    if (t.requires_grad()) t.zero_grad();
  objective(inputs).backward();

  GradcheckResult result;
  NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    MS_CHECK(x.is_contiguous(), "gradcheck: input ", i, " must be contiguous");
    Tensor analytic = x.grad();
    std::vector<double> a =
        analytic.defined() ? analytic.to_vector() : std::vector<double>(x.numel(), 0.0);
    // Perturb a host copy and move it back with copy_ (the input itself when
    // on the CPU), so device inputs are checked through the device path.
    Tensor host = x.to(Device::CPU);
    double* p = host.host_data<double>();
    Tensor target = x;
    auto sync = [&] {
      if (x.device() != Device::CPU) copy_(target, host);
    };
    for (int64_t k = 0; k < x.numel(); ++k) {
      double saved = p[k];
      p[k] = saved + eps;
      sync();
      double up = objective(inputs).item();
      p[k] = saved - eps;
      sync();
      double down = objective(inputs).item();
      p[k] = saved;
      sync();
      double numeric = (up - down) / (2 * eps);
      double err = std::fabs(numeric - a[k]);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (result.ok && err > atol + rtol * std::fabs(numeric)) {
        result.ok = false;
        result.report = str_cat("gradcheck: input ", i, " ", shape_str(x.shape()), " element ", k,
                                ": analytic ", a[k], " vs numeric ", numeric);
      }
    }
  }
  return result;
}

}  // namespace ms
