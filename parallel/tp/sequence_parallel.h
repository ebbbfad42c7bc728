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
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// Collective over `tp`: one coalesced all-reduce (sum) of the .grad of every
// tensor in `params` that has one. Every rank must pass the same list, with
// gradients present on the same entries. A gradient already replicated over
// tp is refused (summed twice: t times the serial gradient); the summed ones
// are marked replicated.
void allreduce_sequence_parallel_grads(const std::vector<Tensor>& params, Communicator& tp);

// Placements of these gradients over tp (docs/architecture.md, "Placements"):
// registers a gradient hook on each parameter that marks the gradient
// backward leaves partial(sum) over tp, labelled with its name — so an
// optimizer step before the tp sum is refused. Over a 1-rank group: nothing.
// (A gradient a ZeRO 2/3 hook already moved into its flat buffers is not
// there to mark: ZeroOptimizer sums those slices itself.)
void place_sequence_parallel_grads_on_backward(
    const std::vector<std::pair<std::string, Tensor>>& params, const Communicator& tp);
// The check before the tp sum (a replicated gradient was summed already) and
// the mark after it, for code that sums the gradients itself (ZeroOptimizer).
void refuse_summed_sequence_parallel_grad(const Tensor& grad, const Communicator& tp,
                                          const char* op);
void place_summed_sequence_parallel_grad(const Tensor& grad, const Communicator& tp);

}  // namespace ms
