// The all-to-all as an autograd op, shared by DeepSpeed-Ulysses (parallel/cp,
// DeepSpeed's _SeqAllToAll) and expert parallelism (parallel/ep, DeepSpeed's
// sharded_moe.py _AllToAll): both are autograd functions whose backward is
// the same exchange of the gradient — the all-to-all is its own adjoint with
// the roles of the blocks swapped back.
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// x (P, ...) over a group of P ranks: block j goes to rank j, block i of the
// result came from rank i. An ms::Error when dim 0 does not split over P.
Tensor differentiable_all_to_all(const Tensor& x, Communicator& group);

}  // namespace ms
