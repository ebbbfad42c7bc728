#include "parallel/ep/ep_optimizer.h"

#include <cmath>

#include "tensor/factory.h"

namespace ms {

double ep_optimizer_step(ZeroOptimizer& dense, ZeroOptimizer& experts, EpGroups& groups, double lr,
                         double max_norm) {
  const double dense_sq = dense.reduce_and_sq_norm(1.0);  // the same on every dp rank
  // Averaged over D/P by the expert-dp reduction; 1/P more makes it 1/D.
  double expert_sq = experts.reduce_and_sq_norm(1.0 / static_cast<double>(groups.ep.size()));
  if (groups.ep.size() > 1) {
    Tensor t = full({1}, expert_sq, DType::F64);
    groups.ep.all_reduce(t, ReduceOp::Sum);
    expert_sq = t.item();
  }
  const double norm = std::sqrt(dense_sq + expert_sq);
  dense.finish_step(lr, max_norm, norm);
  experts.finish_step(lr, max_norm, norm);
  return norm;
}

}  // namespace ms
