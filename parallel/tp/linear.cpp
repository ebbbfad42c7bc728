// Column- and row-parallel linear: the local GEMM between the mappings of
// mappings.h (see linear.h for the split rules).
#include "parallel/tp/linear.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/comm/placement.h"
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

// Whether this call sets placements: over a 1-rank group, or with
// MS_PLACEMENT_CHECKS=0, the label strings are not even built.
bool placing(const Communicator& tp) {
  return tp.size() > 1 && placement_checks_enabled();
}

// "h.0.attn.c_proj: <what>" from the weight's label (its parameter name,
// set where the shards are cut), so an error names the layer.
std::string layer_label(const Tensor& weight, const char* what) {
  std::string name = weight.impl()->placements.label;
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    name.resize(name.size() - suffix.size());
  return name.empty() ? std::string(what) : name + ": " + what;
}

// A column-parallel output: this rank's block of the output features (its
// other axes, e.g. cp's sequence shard, are the input's).
Tensor place_column_output(const Tensor& y, const Tensor& x, const Tensor& weight,
                           Communicator& tp) {
  if (!placing(tp)) return y;
  copy_placements(y, x);
  place_over(y, MeshAxis::TP, tp, Placement::sharded(-1, y.dim()),
             layer_label(weight, "column_parallel_linear output"));
  return y;
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
  Tensor y = place_column_output(
      linear(x_full, detach(weight), bias.defined() ? detach(bias) : Tensor()), x, weight, tp);
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
  Tensor y = place_column_output(linear(in, weight, bias), x, weight, tp);  // (B, T, out/t)
  return opt.gather_output ? gather_from_tp_region(y, tp) : y;
}

// Megatron: RowParallelLinear.forward — GEMM without bias, reduce, then
// `output = output_ + self.bias`. The GEMM output is partial(sum) over tp;
// the reduction makes it replicated (sharded along T under SP), and only
// then is the replicated bias added: added before, the sum rule refuses it
// (it would be added t times).
Tensor row_parallel_linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Communicator& tp, const RowParallelOptions& opt) {
  const char* op = "row_parallel_linear";
  MS_CHECK(!opt.sequence_parallel || opt.input_is_parallel, op,
           ": sequence_parallel needs input_is_parallel (as in Megatron)");
  Tensor in = opt.input_is_parallel ? x : scatter_to_tp_region(x, tp);  // (B, T, in/t)
  check_shapes(op, in, weight, bias);
  refuse_placement(in, MeshAxis::TP, Placement::Kind::Partial, op,
                   "its input must be this rank's block of the features, not a partial sum");
  Tensor partial = linear(in, weight);  // (B, T, out): this rank's share of the sum
  if (placing(tp)) {
    copy_placements(partial, in);
    place_over(partial, MeshAxis::TP, tp, Placement::partial(),
               layer_label(weight, "row_parallel_linear output (before its all-reduce)"));
  }
  // The planted bug (tests only): the reduction forgotten, the partial sums
  // returned as if they were the output.
  if (planted_bug() == PlantedBug::SkipRowParallelAllReduce) return partial;
  Tensor y = opt.sequence_parallel ? reduce_scatter_to_sequence_parallel_region(partial, tp)
                                   : reduce_from_tp_region(partial, tp);
  Tensor out = bias.defined() ? add(y, bias) : y;
  if (placing(tp)) set_label(out, layer_label(weight, "row_parallel_linear output"));
  return out;
}

}  // namespace ms
