// The gradient norm that counts each tp parameter once (grad_norm.h).
#include "parallel/tp/grad_norm.h"

#include "autograd/ops.h"
#include "parallel/tp/shard.h"

namespace ms {

double tp_grad_norm_squared(const std::vector<std::pair<std::string, Tensor>>& named_params,
                            Communicator& tp) {
  double local = 0;
  for (const auto& [name, p] : named_params) {
    if (!p.grad().defined()) continue;
    const bool duplicate = tp_split_of(name) == TpSplit::Replicated && tp.rank() != 0;
    if (duplicate) continue;
    Tensor g = contiguous(to(detach(p.grad()), DType::F64));
    const double* d = g.host_data<double>();
    for (int64_t i = 0; i < g.numel(); ++i) local += d[i] * d[i];
  }
  Tensor total = from_vector(std::vector<double>{local}, {1}, DType::F64);
  tp.all_reduce(total, ReduceOp::Sum);
  return total.host_data<double>()[0];
}

}  // namespace ms
