// Column- and row-parallel linear: the local GEMM between the mappings of
// mappings.h (see linear.h for the split rules).
#include "parallel/tp/linear.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/tp/mappings.h"

namespace ms {

namespace {

void check_shapes(const char* op, const Tensor& x, const Tensor& w, const Tensor& b) {
  MS_CHECK(w.dim() == 2, op, ": weight must be a 2-D shard [in, out], got ", shape_str(w.shape()));
  MS_CHECK(x.dim() >= 1 && x.shape().back() == w.shape()[0], op, ": input ", shape_str(x.shape()),
           " does not match weight shard ", shape_str(w.shape()), " (last dim must be ",
           w.shape()[0], ")");
  MS_CHECK(!b.defined() || (b.dim() == 1 && b.shape()[0] == w.shape()[1]), op, ": bias ",
           shape_str(b.shape()), " does not match weight shard ", shape_str(w.shape()));
}

// Sequence-parallel column linear that saves the input shard, not the
// gathered input. Megatron: LinearWithGradAccumulationAndAsyncCommunication
// with sequence_parallel (forward all-gathers; backward all-gathers the input
// again for the weight gradient and reduce-scatters the input gradient).
Tensor column_sp_regather(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Communicator& tp) {
  const char* op = "column_parallel_linear (sequence parallel, regather)";
  MS_CHECK(x.dim() == 3, op, ": expects (B, T/t, in), got ", shape_str(x.shape()));
  Tensor x_full = tp_all_gather(x, 1, tp, op);  // (B, T, in), not kept
  check_shapes(op, x_full, weight, bias);
  Tensor y = linear(x_full, detach(weight), bias.defined() ? detach(bias) : Tensor());
  if (!needs_grad({&x, &weight, &bias})) return y;
  const bool has_bias = bias.defined();
  record(y, op, {x, weight, bias},
         [xs = detach(x), w = detach(weight), has_bias, tp, op](const Tensor& g) mutable {
           Tensor full = tp_all_gather(xs, 1, tp, op);  // (B, T, in), again
           const int64_t in = w.shape()[0], out = w.shape()[1];
           Tensor g2 = reshape(contiguous(g), {-1, out});    // (B·T, out/t)
           Tensor dx_full = matmul(g2, transpose(w, 0, 1));  // (B·T, in): a partial sum
           Tensor dw = matmul(transpose(reshape(full, {-1, in}), 0, 1), g2);  // (in, out/t)
           Tensor db = has_bias ? sum(g2, {0}) : Tensor();
           Tensor dx = tp_reduce_scatter(reshape(dx_full, full.shape()), 1, tp, op);
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

}  // namespace

// Megatron: ColumnParallelLinear.forward (gather_output, sequence_parallel).
Tensor column_parallel_linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Communicator& tp, const ColumnParallelOptions& opt) {
  const char* op = "column_parallel_linear";
  MS_CHECK(!(opt.sequence_parallel && opt.gather_output), op,
           ": gather_output is not supported with sequence_parallel (as in Megatron)");
  if (opt.sequence_parallel && opt.regather_in_backward)
    return column_sp_regather(x, weight, bias, tp);
  Tensor in = opt.sequence_parallel ? gather_from_sequence_parallel_region(x, tp)  // (B, T, in)
                                    : copy_to_tp_region(x, tp);
  check_shapes(op, in, weight, bias);
  Tensor y = linear(in, weight, bias);  // (B, T, out/t)
  return opt.gather_output ? gather_from_tp_region(y, tp) : y;
}

// Megatron: RowParallelLinear.forward — GEMM without bias, reduce, then
// `output = output_ + self.bias`.
Tensor row_parallel_linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Communicator& tp, const RowParallelOptions& opt) {
  const char* op = "row_parallel_linear";
  MS_CHECK(!opt.sequence_parallel || opt.input_is_parallel, op,
           ": sequence_parallel needs input_is_parallel (as in Megatron)");
  Tensor in = opt.input_is_parallel ? x : scatter_to_tp_region(x, tp);  // (B, T, in/t)
  check_shapes(op, in, weight, bias);
  Tensor partial = linear(in, weight);  // (B, T, out): this rank's share of the sum
  Tensor y = opt.sequence_parallel ? reduce_scatter_to_sequence_parallel_region(partial, tp)
                                   : reduce_from_tp_region(partial, tp);
  return bias.defined() ? add(y, bias) : y;
}

}  // namespace ms
