// What sequence parallelism adds besides its two mappings (mappings.h): the
// gradients of parameters that are replicated over tp but see only this
// rank's T/t tokens — LayerNorm weights and biases, and the row-parallel
// biases added after the reduce-scatter — are PARTIAL sums and must be summed
// over tp after backward (Korthikanti et al. 2022; Megatron-LM
// finalize_model_grads → _allreduce_non_tensor_model_parallel_grads, which
// picks the params tagged `sequence_parallel`). Forgetting it leaves each
// rank's copy training on 1/t of the tokens: the copies drift apart and the
// loss flat-lines (GPT-NeoX PR #1257). It must SUM, not average: the serial
// gradient is the sum over all tokens.
#pragma once
#include <vector>

#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// Collective over `tp`: one coalesced all-reduce (sum) of the .grad of every
// tensor in `params` that has one. Every rank must pass the same list, with
// gradients present on the same entries.
void allreduce_sequence_parallel_grads(const std::vector<Tensor>& params, Communicator& tp);

}  // namespace ms
