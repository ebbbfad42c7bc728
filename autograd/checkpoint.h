// Activation checkpointing (Chen et al. 2016, "Training Deep Nets with
// Sublinear Memory Cost"): run a region of the model without recording its
// graph, keep only the region's input, and rebuild the graph in backward by
// running the region again. Memory: the input instead of everything the
// region's ops save (for a GPT-2 block 1·BTC values instead of
// 16·BTC + NH·BT², lesson 04 question 9); cost: one more forward of the region.
//
// The design is Megatron-LM's and DeepSpeed's CheckpointFunction
// (megatron/core/tensor_parallel/random.py, deepspeed/runtime/
// activation_checkpointing/checkpointing.py):
//   forward:  save the states of the RNG streams the region draws from, run it
//             under NoGradGuard, record ONE node whose only saved tensor is
//             the input;
//   backward: stash the streams' current states, put back the forward-time
//             ones, re-run the region with grad on from a detached copy of the
//             input, put the stashed states back, backpropagate the incoming
//             gradient through the rebuilt graph (parameter gradients
//             accumulate into .grad and their hooks fire, as without
//             checkpointing), and return the input's gradient.
//
// The RNG trap: a dropout inside the region must draw the SAME mask in the
// recompute as in the forward, else backward differentiates a different
// function and every gradient is silently wrong. The region's generators
// have usually moved on by then (the rest of the forward drew from them; in a
// pipeline the next micro-batch's forward may even have run through the same
// block), so their forward-time states are saved and replayed — what
// Megatron's get_cuda_rng_tracker().get_states()/set_states() pair does for
// its named streams. The stashed states are put back after the recompute, so
// a later forward draws exactly what it would have drawn without
// checkpointing. minispeed has no global RNG: every Dropout owns its
// Generator, so the caller names the streams (nn/checkpointed_block.h finds a
// block's Dropouts itself).
//
// Unlike PyTorch's reentrant torch.utils.checkpoint, the node is recorded
// whenever grad mode is on, even if the input does not require grad: the
// parameters used inside still get their gradients.
#pragma once
#include <functional>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

// y = fn(input), keeping only `input` (and the states of `generators`) for
// backward. fn must be a deterministic function of its input, its parameters
// and `generators`: it runs twice. Under NoGradGuard this is just fn(input).
// The node it records is named `op` in error messages.
Tensor checkpoint(std::function<Tensor(const Tensor&)> fn, const Tensor& input,
                  std::vector<Generator*> generators = {},
                  const char* op = "checkpoint");

}  // namespace ms
