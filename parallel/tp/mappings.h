// The communication operators of Megatron tensor parallelism, as autograd ops
// (Shoeybi et al. 2019, Fig. 3; Korthikanti et al. 2022, Fig. 5). Each mirrors
// a function of Megatron-LM's megatron/core/tensor_parallel/mappings.py and is
// the conjugate of its backward: what one does forward, the other does in
// backward.
//
//   op (Megatron name without "tensor_model_parallel")  forward          backward
//   copy_to_tp_region                  (paper's f)      identity         all-reduce
//   reduce_from_tp_region              (paper's g)      all-reduce       identity
//   scatter_to_tp_region                                split last dim   all-gather last dim
//   gather_from_tp_region                               all-gather last  split last dim
//   scatter_to_sequence_parallel_region                 split T          all-gather T
//   gather_from_sequence_parallel_region                all-gather T     reduce-scatter T
//   reduce_scatter_to_sequence_parallel_region          reduce-scatter T all-gather T
//
// All reductions are sums over `tp`, the tensor-parallel group (Mesh::tp()).
//
// Placements over tp (tensor/placement.h; set only when tp > 1), forward and
// on the gradient in backward; R replicated, P partial(sum), S(d) sharded:
//   f                 in not P/S -> R       grad: any but R -> R (all-reduce)
//   g                 in not R   -> R       grad: R (identity)
//   scatter / gather  -> S(-1) / R          grad: R / S(-1)
//   SP scatter        -> S(1)               grad: R
//   SP gather         in not P   -> R       grad: not R -> S(1) (reduce-scatter)
//   SP reduce-scatter in not R   -> S(1)    grad: R
// A reduction of a replicated input (it was already reduced) and a split or
// gather of a partial one are ms::Errors naming the tensor and the op.
//
// The sequence dimension. Megatron keeps activations as (s, b, h), so its
// sequence dim is dim 0 and one all-gather lays the ranks' blocks end to end.
// Ours are (B, T, C) (GPT-2's and llm.c's layout), and the sequence dim is
// T = dim 1: under sequence parallelism tp rank r holds positions
// [r·T/t, (r+1)·T/t) of EVERY sequence of the batch, shape (B, T/t, C). So
// a rank's shard is strided in memory when B > 1, and a collective moves
// contiguous blocks: the all-gather receives (t, B, T/t, C) and permutes it
// to (B, t, T/t, C) = (B, T, C) (one copy); the reduce-scatter first permutes
// (B, T, C) viewed as (B, t, T/t, C) into contiguous (t, B, T/t, C) blocks.
// When B == 1 the permutes are free. (Sharding the flattened B·T tokens would
// avoid the copies but would hand a rank the end of one sequence and the
// start of the next, and the position embedding would no longer be a slice.)
//
// Rule of every op here: all ranks of `tp` build the same graph, so their
// backward passes issue the same collectives in the same order.
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// f: identity forward; backward all-reduces the input gradient (each rank's
// column shard contributes a partial dL/dx).
Tensor copy_to_tp_region(const Tensor& x, Communicator& tp);
// g: all-reduce (sum) forward; identity backward.
Tensor reduce_from_tp_region(const Tensor& x, Communicator& tp);
// (..., n) -> (..., n/t): keep this rank's chunk; backward all-gathers.
Tensor scatter_to_tp_region(const Tensor& x, Communicator& tp);
// (..., n/t) -> (..., n): all-gather; backward keeps this rank's chunk.
Tensor gather_from_tp_region(const Tensor& x, Communicator& tp);

// (B, T, ...) -> (B, T/t, ...): this rank's positions; backward all-gathers.
Tensor scatter_to_sequence_parallel_region(const Tensor& x, Communicator& tp);
// (B, T/t, ...) -> (B, T, ...): all-gather over T; backward reduce-scatters
// (the consumer is a column-parallel layer whose every rank sends a partial
// gradient for all T positions).
Tensor gather_from_sequence_parallel_region(const Tensor& x, Communicator& tp);
// (B, T, ...) partial sums -> (B, T/t, ...) summed: reduce-scatter over T;
// backward all-gathers.
Tensor reduce_scatter_to_sequence_parallel_region(const Tensor& x, Communicator& tp);

// The raw collectives behind the ops (no graph), for sharding code and tests.
// `dim` may be negative. Errors name `op`, the shape and the group size.
Tensor tp_all_reduce(const Tensor& x, Communicator& tp);                          // sum
Tensor tp_split(const Tensor& x, int64_t dim, Communicator& tp, const char* op);  // my chunk
Tensor tp_all_gather(const Tensor& x, int64_t dim, Communicator& tp, const char* op);
Tensor tp_reduce_scatter(const Tensor& x, int64_t dim, Communicator& tp, const char* op);

}  // namespace ms
