// The gradient norm that counts each tp parameter once (grad_norm.h).
#include "parallel/tp/grad_norm.h"

#include "autograd/ops.h"
#include "optim/kernels.h"
#include "parallel/tp/shard.h"

namespace ms {

double tp_grad_norm_squared(const std::vector<std::pair<std::string, Tensor>>& named_params,
                            Communicator& tp) {
  double local = 0;
  for (const auto& [name, p] : named_params) {
    if (!p.grad().defined()) continue;
    const bool duplicate = tp_split_of(name) == TpSplit::Replicated && tp.rank() != 0;
    if (duplicate) continue;
    // Σ g² in double by the sum_squares kernel on the gradient's device
    // (optim/kernels.h); a 16-bit gradient widens to f32 first (exact).
    Tensor g = detach(p.grad());
    if (g.dtype() != DType::F32) g = to(g, DType::F32);
    local += optim_kernels::sum_squares(optim_kernels::contiguous_or_self(g));
  }
  Tensor total = from_vector(std::vector<double>{local}, {1}, DType::F64);
  tp.all_reduce(total, ReduceOp::Sum);
  return total.item();
}

}  // namespace ms
