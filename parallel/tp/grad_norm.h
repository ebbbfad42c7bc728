// The global gradient norm of a tensor-parallel model, every parameter
// counted once: a sharded parameter's ‖g‖² is summed over tp (each rank holds
// a different piece), a replicated one (LayerNorms, wpe, row-parallel biases)
// is counted on tp rank 0 only (every rank holds the same copy; summing them
// would count it t times and clip too hard). Megatron-LM
// megatron/core/optimizer/clip_grads.py::get_grad_norm_fp32 over the params
// that pass param_is_not_tensor_parallel_duplicate, then one all-reduce over
// the model-parallel group. Under sequence parallelism, call it after
// allreduce_sequence_parallel_grads, when the replicated grads are complete.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// Collective over `tp`: Σ ‖grad‖² over the model (f64), the same on every tp
// rank. Which parameters are sharded comes from their names (shard.h,
// tp_split_of); parameters without a gradient count zero. Over a dp group
// the caller adds nothing: dp replicas hold the same gradient after their
// own all-reduce.
double tp_grad_norm_squared(const std::vector<std::pair<std::string, Tensor>>& named_params,
                            Communicator& tp);

}  // namespace ms
