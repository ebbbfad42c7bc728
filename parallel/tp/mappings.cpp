// Megatron's mappings.py as autograd ops; see mappings.h for the table and the
// choice of T as the sequence dim.
#include "parallel/tp/mappings.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/comm/placement.h"

namespace ms {

namespace {

int64_t wrap(int64_t dim, const Tensor& x, const char* op) {
  const int64_t d = x.dim();
  MS_CHECK(dim >= -d && dim < d, op, ": dim ", dim, " is out of range for shape ",
           shape_str(x.shape()));
  return dim < 0 ? dim + d : dim;
}

void check_divides(const Tensor& x, int64_t dim, int t, const char* op) {
  MS_CHECK(x.shape()[dim] % t == 0, op, ": dim ", dim, " of shape ", shape_str(x.shape()),
           " (size ", x.shape()[dim], ") does not split evenly over tp ", t);
}

// The sequence dim of (B, T, ...) activations (mappings.h).
constexpr int64_t kSeqDim = 1;

const Shape& require_seq(const Tensor& x, const char* op) {
  MS_CHECK(x.dim() >= 2, op, ": expects (B, T, ...) activations, got shape ", shape_str(x.shape()));
  return x.shape();
}

// The all-reduce (sum) behind tp_all_reduce, g and f's backward. A
// replicated input is refused: it was already summed, and summing it again
// counts every rank's share t times (the reduction done twice).
Tensor all_reduce_sum(const Tensor& x, Communicator& tp, const char* op, const char* out_label) {
  refuse_reduced_twice(x, MeshAxis::TP, tp, op);
  Tensor y = clone(detach(x));  // a fresh contiguous buffer: the collective works in place
  tp.all_reduce(y, ReduceOp::Sum);
  copy_placements(y, x);  // the other axes are the input's
  place_over(y, MeshAxis::TP, tp, Placement::replicated(), out_label);
  return y;
}

// A gradient flowing back through an identity (g's backward, f's forward):
// the same values, placed `p` over tp.
Tensor placed_view(const Tensor& x, Communicator& tp, Placement p, const char* label) {
  Tensor out = detach(x);
  copy_placements(out, x);
  place_over(out, MeshAxis::TP, tp, p, label);
  return out;
}

}  // namespace

// The raw collectives check their input and place their output over tp
// (docs/architecture.md, "Placements"): all-reduce and reduce-scatter refuse
// a replicated input, split and all-gather a partial one.
Tensor tp_all_reduce(const Tensor& x, Communicator& tp) {
  return all_reduce_sum(x, tp, "tp_all_reduce", "tp_all_reduce output");
}

Tensor tp_split(const Tensor& x, int64_t dim, Communicator& tp, const char* op) {
  dim = wrap(dim, x, op);
  check_divides(x, dim, tp.size(), op);
  refuse_placement(x, MeshAxis::TP, Placement::Kind::Partial, op,
                   "a block of a partial sum is not a shard of the value (reduce-scatter it)");
  const int64_t n = x.shape()[dim] / tp.size();
  Tensor out = contiguous(narrow(detach(x), dim, tp.rank() * n, n));
  copy_placements(out, x);  // the other axes are the input's
  place_over(out, MeshAxis::TP, tp, Placement::sharded(dim, out.dim()),
             std::string(op) + " output");
  return out;
}

Tensor tp_all_gather(const Tensor& x, int64_t dim, Communicator& tp, const char* op) {
  dim = wrap(dim, x, op);
  const int t = tp.size();
  refuse_placement(x, MeshAxis::TP, Placement::Kind::Partial, op,
                   "all-gathering partial sums lays them side by side unsummed (a missing "
                   "reduce-scatter or all-reduce?)");
  Tensor local = contiguous(detach(x));
  Shape blocks_shape{t};  // (t, x.shape...): block r is rank r's x
  blocks_shape.insert(blocks_shape.end(), x.shape().begin(), x.shape().end());
  Tensor blocks = Tensor::empty(blocks_shape, x.dtype(), x.device());
  tp.all_gather(local, blocks);
  // Move the rank axis next to `dim` and merge: (..., t, x.shape[dim], ...).
  Shape perm;
  for (int64_t i = 0; i < dim; ++i) perm.push_back(i + 1);
  perm.push_back(0);
  for (int64_t i = dim; i < x.dim(); ++i) perm.push_back(i + 1);
  Shape out_shape = x.shape();
  out_shape[dim] *= t;
  Tensor out = contiguous(reshape(permute(blocks, perm), out_shape));
  copy_placements(out, x);  // the other axes are the input's
  place_over(out, MeshAxis::TP, tp, Placement::replicated(), std::string(op) + " output");
  return out;
}

Tensor tp_reduce_scatter(const Tensor& x, int64_t dim, Communicator& tp, const char* op) {
  dim = wrap(dim, x, op);
  const int t = tp.size();
  check_divides(x, dim, t, op);
  refuse_reduced_twice(x, MeshAxis::TP, tp, op);
  // View dim as (t, n/t) and bring the t axis to the front, so block r is the
  // contiguous part rank r receives.
  Shape split_shape;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i == dim) split_shape.push_back(t);
    split_shape.push_back(i == dim ? x.shape()[i] / t : x.shape()[i]);
  }
  Shape perm{dim};
  for (int64_t i = 0; i <= x.dim(); ++i)
    if (i != dim) perm.push_back(i);
  Tensor blocks = contiguous(permute(reshape(detach(x), split_shape), perm));  // (t, ...)
  Shape out_shape = x.shape();
  out_shape[dim] /= t;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  tp.reduce_scatter(blocks, out, ReduceOp::Sum);
  copy_placements(out, x);  // the other axes are the input's
  place_over(out, MeshAxis::TP, tp, Placement::sharded(dim, out.dim()),
             std::string(op) + " output");
  return out;
}

// Megatron: _CopyToModelParallelRegion.
// Forward: the input must be the whole activation on every rank (not a
// partial sum, not a shard); the output is replicated. Backward: each rank's
// column shard contributed a partial dL/dx, which the all-reduce sums into a
// replicated gradient.
Tensor copy_to_tp_region(const Tensor& x, Communicator& tp) {
  const char* op = "copy_to_tp_region (f)";
  refuse_placement(x, MeshAxis::TP, Placement::Kind::Partial, op,
                   "f hands every rank the same input, so a partial sum must be all-reduced "
                   "first (a missing g?)");
  refuse_placement(x, MeshAxis::TP, Placement::Kind::Sharded, op,
                   "f hands every rank the same input, so a shard must be all-gathered first");
  Tensor out = placed_view(x, tp, Placement::replicated(), "copy_to_tp_region output");
  if (needs_grad({&x})) {
    record(out, "copy_to_tp_region", {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{
          all_reduce_sum(g, tp, "copy_to_tp_region (f) backward", "gradient of f's input")};
    });
  }
  return out;
}

// Megatron: _ReduceFromModelParallelRegion.
// Forward: a partial input (a replicated one is refused), a replicated
// output. Backward: the gradient of the replicated output is the same on
// every rank and passes through as the replicated gradient of the partial input.
Tensor reduce_from_tp_region(const Tensor& x, Communicator& tp) {
  Tensor out = all_reduce_sum(x, tp, "reduce_from_tp_region (g)", "reduce_from_tp_region output");
  if (needs_grad({&x}))
    record(out, "reduce_from_tp_region", {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{
          placed_view(g, tp, Placement::replicated(), "gradient of g's input")};
    });
  return out;
}

// Megatron: _ScatterToModelParallelRegion.
Tensor scatter_to_tp_region(const Tensor& x, Communicator& tp) {
  Tensor out = tp_split(x, -1, tp, "scatter_to_tp_region");
  if (needs_grad({&x})) {
    record(out, "scatter_to_tp_region", {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{tp_all_gather(g, -1, tp, "scatter_to_tp_region backward")};
    });
  }
  return out;
}

// Megatron: _GatherFromModelParallelRegion.
Tensor gather_from_tp_region(const Tensor& x, Communicator& tp) {
  Tensor out = tp_all_gather(x, -1, tp, "gather_from_tp_region");
  if (needs_grad({&x})) {
    record(out, "gather_from_tp_region", {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{tp_split(g, -1, tp, "gather_from_tp_region backward")};
    });
  }
  return out;
}

// Megatron: _ScatterToSequenceParallelRegion (dim 0 there, T here).
Tensor scatter_to_sequence_parallel_region(const Tensor& x, Communicator& tp) {
  const char* op = "scatter_to_sequence_parallel_region";
  require_seq(x, op);
  Tensor out = tp_split(x, kSeqDim, tp, op);
  if (needs_grad({&x})) {
    record(out, op, {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{
          tp_all_gather(g, kSeqDim, tp, "scatter_to_sequence_parallel_region backward")};
    });
  }
  return out;
}

// Megatron: _GatherFromSequenceParallelRegion with tensor_parallel_output_grad
// = True (the consumer is tensor-parallel, so every rank holds a partial
// gradient of the whole sequence).
Tensor gather_from_sequence_parallel_region(const Tensor& x, Communicator& tp) {
  const char* op = "gather_from_sequence_parallel_region";
  require_seq(x, op);
  Tensor out = tp_all_gather(x, kSeqDim, tp, op);
  if (needs_grad({&x})) {
    record(out, op, {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{
          tp_reduce_scatter(g, kSeqDim, tp, "gather_from_sequence_parallel_region backward")};
    });
  }
  return out;
}

// Megatron: _ReduceScatterToSequenceParallelRegion.
Tensor reduce_scatter_to_sequence_parallel_region(const Tensor& x, Communicator& tp) {
  const char* op = "reduce_scatter_to_sequence_parallel_region";
  require_seq(x, op);
  Tensor out = tp_reduce_scatter(x, kSeqDim, tp, op);
  if (needs_grad({&x})) {
    record(out, op, {x}, [tp](const Tensor& g) mutable {
      return std::vector<Tensor>{
          tp_all_gather(g, kSeqDim, tp, "reduce_scatter_to_sequence_parallel_region backward")};
    });
  }
  return out;
}

}  // namespace ms
