// The tp sum of sequence-parallel parameters' gradients (sequence_parallel.h).
#include "parallel/tp/sequence_parallel.h"

#include "autograd/ops.h"
#include "parallel/comm/placement.h"

namespace ms {

// Megatron: _allreduce_non_tensor_model_parallel_grads (coalesced, SUM).
void allreduce_sequence_parallel_grads(const std::vector<Tensor>& params, Communicator& tp) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return;
  for (const Tensor& g : grads)
    refuse_summed_sequence_parallel_grad(g, tp, "allreduce_sequence_parallel_grads");
  std::vector<Tensor> flat;
  for (const Tensor& g : grads) flat.push_back(reshape(detach(g), {-1}));
  Tensor buf = contiguous(cat(flat, 0));  // (Σ numel): one message instead of one per tensor
  tp.all_reduce(buf, ReduceOp::Sum);
  int64_t off = 0;
  for (Tensor& g : grads) {
    Tensor dst = g;
    copy_(dst, reshape(narrow(buf, 0, off, g.numel()), g.shape()));
    off += g.numel();
    place_summed_sequence_parallel_grad(g, tp);
  }
}

void place_sequence_parallel_grads_on_backward(
    const std::vector<std::pair<std::string, Tensor>>& params, const Communicator& tp) {
  if (tp.size() == 1 || !placement_checks_enabled()) return;
  for (const auto& [name, p] : params) {
    Tensor param = p;
    const std::string label =
        "gradient of " + name + " (this rank's T/t positions, before the tp sum)";
    // ZeRO 2/3's hooks, which ran first, may have moved the gradient into
    // their flat buffers and left none here: nothing to mark then.
    param.register_grad_hook([tp, label](Tensor& q) {
      if (q.grad().defined()) place_over(q.grad(), MeshAxis::TP, tp, Placement::partial(), label);
    });
  }
}

void refuse_summed_sequence_parallel_grad(const Tensor& grad, const Communicator& tp,
                                          const char* op) {
  refuse_reduced_twice(grad, MeshAxis::TP, tp, op);
}

void place_summed_sequence_parallel_grad(const Tensor& grad, const Communicator& tp) {
  if (tp.size() == 1 || !placement_checks_enabled()) return;
  std::string label = grad.impl()->placements.label;  // "gradient of NAME (this rank's ...)"
  label = label.substr(0, label.find(" (this rank's"));
  place_over(grad, MeshAxis::TP, tp, Placement::replicated(), label);
}

}  // namespace ms
