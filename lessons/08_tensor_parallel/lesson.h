// Lesson 08: tensor parallelism. You write Megatron's row-parallel linear —
// which rows of the weight a rank keeps, and the layer's forward and backward
// as one autograd op — in exercise.cpp; check.cpp runs it on 4 ranks, as two
// groups of t = 2 and as one group of t = 4, against the serial layer.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/comm/communicator.h"

// The layer is GPT-2's Conv1D (attn.c_proj, mlp.c_proj): weight W [in, out],
// y = x·W + b. t = tp.size(), r = tp.rank(), k = in / t (t divides in).
//
// This rank's shard of the full weight W [in, out]: rows [r·k, (r+1)·k), shape
// [k, out], a contiguous copy. (Megatron's RowParallelLinear splits dim 1 of
// its [out, in] torch.nn.Linear weight; Conv1D is the transpose, so here it is
// dim 0.)
ms::Tensor row_parallel_shard(const ms::Tensor& w_full, ms::Communicator& tp);

// The row-parallel linear of one rank, differentiable: records ONE Node,
// "my_row_parallel_linear", with inputs {x, w, b}.
//   x  (B, T, k)  input features [r·k, (r+1)·k) of the full (B, T, in) input
//                 (what a column-parallel layer before it left on this rank)
//   w  [k, out]   this rank's rows of W, as row_parallel_shard returns them
//   b  [out]      the FULL bias, identical on every rank of tp
// Returns y (B, T, out) = x_full·W + b, the full output, the same on every
// rank. Forward: one all-reduce (sum) over tp — Megatron's g.
// Backward gets dy (B, T, out), the same on every rank (everything after this
// layer is replicated), and returns {dx (B, T, k), dw [k, out], db [out]}:
// each rank's gradients of ITS x and w, and the bias gradient, which every
// rank computes whole. The backward communicates nothing.
ms::Tensor my_row_parallel_linear(ms::Communicator& tp, const ms::Tensor& x, const ms::Tensor& w,
                                  const ms::Tensor& b);
