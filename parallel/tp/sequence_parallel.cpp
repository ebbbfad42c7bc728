// The tp sum of sequence-parallel parameters' gradients (sequence_parallel.h).
#include "parallel/tp/sequence_parallel.h"

#include "autograd/ops.h"

namespace ms {

// Megatron: _allreduce_non_tensor_model_parallel_grads (coalesced, SUM).
void allreduce_sequence_parallel_grads(const std::vector<Tensor>& params, Communicator& tp) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return;
  std::vector<Tensor> flat;
  for (const Tensor& g : grads) flat.push_back(reshape(detach(g), {-1}));
  Tensor buf = contiguous(cat(flat, 0));  // (Σ numel): one message instead of one per tensor
  tp.all_reduce(buf, ReduceOp::Sum);
  int64_t off = 0;
  for (Tensor& g : grads) {
    Tensor dst = g;
    copy_(dst, reshape(narrow(buf, 0, off, g.numel()), g.shape()));
    off += g.numel();
  }
}

}  // namespace ms
