// Lesson 08 exercise: write the row-parallel linear, then run
// `make lesson L=08 TRY=1` (4 ranks: two groups of t = 2, then one of t = 4).
//
// Tools (autograd/ops.h, autograd/node.h, parallel/comm/communicator.h):
//   tp.rank(), tp.size()
//   ms::narrow(t, dim, start, length)  a view;  ms::contiguous(t)  a packed copy of a view
//   ms::linear(x, w)                   x (..., k) · w [k, out] -> (..., out), a fresh buffer
//   tp.all_reduce(t, ms::ReduceOp::Sum)  in place, t contiguous
//   ms::add(a, b), ms::matmul(a, b), ms::transpose(t, 0, 1), ms::reshape(t, {-1, n}),
//   ms::sum(t, {0})                    column sums of a 2-D t
//   ms::NoGradGuard, ms::needs_grad({&x, ...}), ms::record(out, "name", {inputs}, backward)
//     as in lesson 02: the forward's own ops record nothing; record() attaches one Node
//     whose backward maps dL/dy to one gradient per input.
#include "lessons/08_tensor_parallel/lesson.h"

ms::Tensor row_parallel_shard(const ms::Tensor& w_full, ms::Communicator& tp) {
  // TODO 1: this rank's rows of w_full [in, out] (lesson.h), as a contiguous [in/t, out].
  (void)w_full, (void)tp;
  throw ms::Error("TODO: write row_parallel_shard in lessons/08_tensor_parallel/exercise.cpp");
}

ms::Tensor my_row_parallel_linear(ms::Communicator& tp, const ms::Tensor& x, const ms::Tensor& w,
                                  const ms::Tensor& b) {
  // TODO 2: forward, under a NoGradGuard: this rank's partial product, summed over tp,
  //         then the bias (where? README question 4).
  // TODO 3: if ms::needs_grad({&x, &w, &b}): record one Node "my_row_parallel_linear"
  //         whose backward returns {dx, dw, db} from dy (what does it communicate?).
  (void)tp, (void)x, (void)w, (void)b;
  throw ms::Error("TODO: write my_row_parallel_linear in lessons/08_tensor_parallel/exercise.cpp");
}
