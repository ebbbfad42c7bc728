#include "parallel/zero/flat_params.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/kernels.h"

namespace ms {

FlatParams::FlatParams(std::vector<Tensor> params, const std::vector<std::vector<int>>& groups,
                       int dp_size)
    : params_(std::move(params)), D_(dp_size) {
  MS_CHECK(D_ >= 1, "FlatParams: dp size ", D_, " must be at least 1");
  group_of_.assign(params_.size(), -1);
  if (!params_.empty()) dtype_ = params_[0].dtype(), device_ = params_[0].device();
  for (const Tensor& p : params_) {
    MS_CHECK(p.dtype() == dtype_ && is_float_dtype(p.dtype()) && p.is_contiguous(),
             "ZeRO: parameters must be contiguous float tensors of one dtype (", dtype_name(dtype_),
             "), got ", dtype_name(p.dtype()), " ", shape_str(p.shape()));
    MS_CHECK(p.device() == device_, "ZeRO: parameters must be on one device (", device_name(device_),
             "), got ", shape_str(p.shape()), " on ", device_name(p.device()));
    shapes_.push_back(p.shape());
    numel_.push_back(p.numel());
  }
  for (const std::vector<int>& members : groups) {
    FlatGroup grp;
    for (int i : members) {
      MS_ASSERT(i >= 0 && i < static_cast<int>(params_.size()) && group_of_[i] < 0,
                "FlatParams: parameter ", i, " is missing or listed twice");
      group_of_[i] = static_cast<int>(groups_.size());
      grp.params.push_back(i);
      grp.offsets.push_back(grp.numel);
      grp.numel += params_[i].numel();
    }
    grp.padded = (grp.numel + D_ - 1) / D_ * D_;  // every rank owns an equal slice
    grp.slice_numel = grp.padded / D_;
    grp.slice_offset = slices_numel_;
    slices_numel_ += grp.slice_numel;
    groups_.push_back(std::move(grp));
  }
  for (size_t i = 0; i < params_.size(); ++i)
    MS_ASSERT(group_of_[i] >= 0, "FlatParams: parameter ", i, " is in no group");
}

int64_t FlatParams::padding() const {
  int64_t n = 0;
  for (const FlatGroup& g : groups_) n += g.padded - g.numel;
  return n;
}

Tensor FlatParams::view_of(int param, const Tensor& buffer) const {
  const FlatGroup& g = groups_[group_of_[param]];
  int64_t k = 0;
  while (g.params[k] != param) ++k;
  const Shape& shape = shapes_[param];
  return Tensor::make_view(buffer, shape, contiguous_strides(shape),
                           buffer.offset() + g.offsets[k]);
}

Tensor FlatParams::slice_of(int g, const Tensor& buffer, int rank) const {
  return narrow(buffer, 0, rank * groups_[g].slice_numel, groups_[g].slice_numel);
}

Tensor FlatParams::pack_values(int g) const {
  NoGradGuard no_grad;
  Tensor buffer = optim_kernels::zeros_on({groups_[g].padded}, dtype_, device_);
  for (int i : groups_[g].params) {
    Tensor dst = view_of(i, buffer);
    copy_(dst, params_[i]);
  }
  return buffer;
}

Tensor FlatParams::pack_grads(int g, DType grad_dtype) const {
  NoGradGuard no_grad;
  Tensor buffer = optim_kernels::zeros_on({groups_[g].padded}, grad_dtype, device_);
  for (int i : groups_[g].params) {
    Tensor grad = params_[i].grad();
    if (!grad.defined()) continue;
    Tensor dst = view_of(i, buffer);
    copy_(dst, grad);
  }
  return buffer;
}

// Repoints each parameter's TensorImpl — the object every handle to that
// parameter shares (the module's member, named_parameters(), the autograd
// graph) — at the buffer. Its grad, hooks and requires_grad stay as they are.
void FlatParams::bind(int g, const Tensor& buffer) {
  MS_ASSERT(
      buffer.numel() == groups_[g].padded && buffer.is_contiguous() && buffer.dtype() == dtype_,
      "FlatParams::bind: group ", g, " needs ", groups_[g].padded, " ", dtype_name(dtype_),
      " elements");
  const FlatGroup& grp = groups_[g];
  for (size_t k = 0; k < grp.params.size(); ++k) {
    TensorImpl* t = params_[grp.params[k]].impl();
    t->storage = buffer.storage();
    t->shape = shapes_[grp.params[k]];
    t->strides = contiguous_strides(t->shape);
    t->offset = buffer.offset() + grp.offsets[k];
  }
}

void FlatParams::release(int g) {
  // One shared zero-byte storage per device for every released parameter
  // (a released parameter stays on its device).
  static std::shared_ptr<Storage> empty_on[3];
  std::shared_ptr<Storage>& kEmpty = empty_on[static_cast<int>(device_)];
  if (!kEmpty) kEmpty = Tensor::empty({0}, DType::F32, device_).storage();
  for (int i : groups_[g].params) {
    TensorImpl* t = params_[i].impl();
    t->storage = kEmpty;
    t->shape = {0};
    t->strides = {1};
    t->offset = 0;
  }
}

}  // namespace ms
