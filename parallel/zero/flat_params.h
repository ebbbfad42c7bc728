// Flat, padded, D-way partitioned parameter groups: the data layout of ZeRO.
//
// ZeRO never partitions a tensor "by rows" or "by heads". It flattens: the
// parameters of a group are packed end to end into one 1-D buffer, the buffer
// is padded with zeros to a multiple of D, and rank r owns elements
// [r·n/D, (r+1)·n/D) — its *slice*. Every rank's slice has the same size, which
// is exactly what reduce-scatter (rank r receives the sum of block r) and
// all-gather (block r comes from rank r) need, and parameter boundaries do not
// matter: a slice may start in the middle of one weight matrix and end in the
// middle of the next. Padding elements are zero, get zero gradients and stay
// zero under SGD and AdamW, so they never change the math (or the norm).
//
// The model's parameter tensors become *views* into their group's buffer (we
// repoint each parameter's TensorImpl at the buffer's storage), so when an
// all-gather writes the buffer, the model sees the new values in place.
//
// How groups are chosen is what distinguishes the stages:
//   stage 1: one group, the whole model (DeepSpeed's flat fp16 partition);
//   stage 2: gradient buckets of ~bucket_bytes, so each can be reduce-scattered
//            alone while backward runs;
//   stage 3: one group per transformer block (+ one for the rest), the unit
//            that is gathered before it computes and released after — PyTorch
//            FSDP calls such a group a FlatParameter.
//
// The words the stages use, so the three kinds of buffer never blur:
//   full buffer   one group, all D slices: `full_params_[g]` (the model's
//                 parameters view it), stage 1's `full_grads_[g]`;
//   slice         rank r's 1/D of one group's buffer: `param_slices_[g]` (what
//                 my optimizer updates; its .grad is my slice of the gradient);
//   ..._flat_     my slices of every group, back to back, in one buffer of
//                 slices_numel() elements: stage 2's `grad_slices_flat_`,
//                 stage 3's `param_slices_flat_`.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace ms {

struct FlatGroup {
  std::vector<int> params;       // indices into FlatParams::params(), in packing order
  std::vector<int64_t> offsets;  // each parameter's first element in the group buffer
  int64_t numel = 0;             // Σ parameter numels
  int64_t padded = 0;            // numel rounded up to a multiple of D: the full buffer
  int64_t slice_numel = 0;       // padded / D: the part each rank owns
  int64_t slice_offset = 0;      // where this group's slice starts among my slices, back to back
};

class FlatParams {
 public:
  // `groups` lists parameter indices; every parameter must appear exactly once.
  FlatParams(std::vector<Tensor> params, const std::vector<std::vector<int>>& groups, int dp_size);

  int dp_size() const { return D_; }
  // The parameters' dtype (one for all: f32, or bf16/f16 under mixed
  // precision); the full parameter buffers and slices have it too.
  DType dtype() const { return dtype_; }
  // Where the parameters live; the flat buffers are allocated there.
  Device device() const { return device_; }
  const std::vector<Tensor>& params() const { return params_; }
  int num_groups() const { return static_cast<int>(groups_.size()); }
  const FlatGroup& group(int g) const { return groups_[g]; }
  int group_of(int param) const { return group_of_[param]; }
  int64_t slices_numel() const { return slices_numel_; }  // Σ slice_numel: what one rank owns
  int64_t padding() const;                                // Σ (padded - numel)
  const Shape& shape_of(int param) const { return shapes_[param]; }

  // Parameter `param`'s place in a buffer of its group, as a view shaped like it.
  Tensor view_of(int param, const Tensor& buffer) const;
  // Rank r's slice of a group buffer (a view).
  Tensor slice_of(int g, const Tensor& buffer, int rank) const;

  // A new group buffer holding the parameters' current values (padding zero).
  Tensor pack_values(int g) const;
  // A new group buffer of `grad_dtype` holding the parameters' gradients
  // (zero where a parameter has none, and in the padding).
  Tensor pack_grads(int g, DType grad_dtype) const;
  Tensor pack_grads(int g) const { return pack_grads(g, dtype_); }

  // The group's parameters become views of `buffer` (padded numel, dtype()).
  void bind(int g, const Tensor& buffer);
  // The group's parameters become empty (numel 0, like DeepSpeed's
  // `param.data = torch.empty(0)`), dropping their reference to the buffer; the
  // memory is freed once nothing else holds it. bind() restores them.
  void release(int g);
  bool is_released(int param) const { return params_[param].numel() != numel_[param]; }

 private:
  std::vector<Tensor> params_;
  std::vector<FlatGroup> groups_;
  std::vector<int> group_of_;
  std::vector<Shape> shapes_;  // each parameter's real shape (kept while released)
  std::vector<int64_t> numel_;
  int D_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  int64_t slices_numel_ = 0;
};

}  // namespace ms
