// Column- and row-parallel linear: the local GEMM between the mappings of
// mappings.h (see linear.h for the split rules).
#include "parallel/tp/linear.h"

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

}  // namespace

// Megatron: ColumnParallelLinear.forward (gather_output, sequence_parallel).
Tensor column_parallel_linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Communicator& tp, const ColumnParallelOptions& opt) {
  const char* op = "column_parallel_linear";
  MS_CHECK(!(opt.sequence_parallel && opt.gather_output), op,
           ": gather_output is not supported with sequence_parallel (as in Megatron)");
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
