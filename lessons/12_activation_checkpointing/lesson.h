// Lesson 12: activation checkpointing. You write recompute-in-backward for one
// transformer block in exercise.cpp; check.cpp runs it against the plain block
// (gradients to the bit, with dropout on), counts the forwards it ran and
// measures the bytes it kept, then trains a whole GPT with every block under
// your checkpoint.
#pragma once
#include <functional>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/random.h"

// y = block(x), keeping ONLY x for backward (Chen et al. 2016; Megatron's and
// DeepSpeed's CheckpointFunction):
//   block    (B, T, C) -> (B, T, C): a deterministic function of its input, its
//            parameters and the generators in `streams` (the block's dropouts);
//            every call of it is one forward, and the checker counts them
//   x        (B, T, C), the block's input; it may or may not require grad
//   streams  the Generator of every Dropout inside the block
// Forward: run the block WITHOUT recording a graph, and record ONE Node
// "my_checkpoint" with input {x}, whose only saved tensor is x (a detached
// view: the caller's activation, no copy).
// Backward (the Node's function, given dL/dy): run the block once more, with
// grad on, from a fresh leaf holding x's values — drawing the SAME dropout
// masks as the forward did — backpropagate dL/dy through that rebuilt graph
// (the parameters' .grad accumulate, as without checkpointing), and return
// {dL/dx}. Afterwards the streams must be where they were before backward
// started, so the next forward draws what it would have drawn anyway.
ms::Tensor my_checkpoint(const std::function<ms::Tensor(const ms::Tensor&)>& block,
                         const ms::Tensor& x, const std::vector<ms::Generator*>& streams);
