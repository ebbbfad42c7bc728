// gradcheck: compares autograd's gradients with central finite differences,
// in f64, the way torch.autograd.gradcheck does.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace ms {

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string report;  // names the first failing input and element
};

// f maps the inputs to any tensor; a non-scalar output is reduced with fixed
// random weights (sum(out * w)) so every output element's gradient is tested.
// Inputs must be f64; those with requires_grad are checked.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, double eps = 1e-6, double atol = 1e-5,
                          double rtol = 1e-4);

}  // namespace ms
