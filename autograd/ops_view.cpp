// View ops (shared storage, new strides) and the copies that go with them.
// The backward of a view puts the gradient back into the input's geometry.
#include <algorithm>
#include <numeric>
#include <optional>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"
#include "tensor/placement.h"

namespace ms {

namespace {

// Replaces one -1 with the size that keeps numel, checking the total.
Shape infer_shape(const char* op, const Tensor& t, Shape shape) {
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MS_CHECK(infer_at < 0, op, ": only one dimension can be -1, got ", shape_str(shape));
      infer_at = static_cast<int64_t>(i);
    } else {
      MS_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    MS_CHECK(known != 0 && t.numel() % known == 0, op, ": cannot infer -1 in ", shape_str(shape),
             " for a tensor of shape ", shape_str(t.shape()), " (", t.numel(), " elements)");
    shape[infer_at] = t.numel() / known;
  }
  MS_CHECK(shape_numel(shape) == t.numel(), op, ": shape ", shape_str(shape), " (",
           shape_numel(shape), " elements) is invalid for a tensor of shape ", shape_str(t.shape()),
           " (", t.numel(), " elements)");
  return shape;
}

// Strides for viewing `t` as `shape` without a copy, or empty if impossible.
// Groups of old dims that are laid out back to back can be re-split freely;
// a new dim may not straddle two such groups (the rule torch.view follows).
std::optional<Shape> view_strides(const Tensor& t, const Shape& shape) {
  if (t.numel() == 0 || t.is_contiguous()) return contiguous_strides(shape);
  Shape strides(shape.size());
  const Shape& old_shape = t.shape();
  const Shape& old_strides = t.strides();
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    bool chunk_ends =
        d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride);
    if (chunk_ends) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return strides;
}

// Gradient of narrow(): zeros shaped like the input, with `grad` copied into the window.
Tensor scatter_into_zeros(const Shape& input_shape, DType dtype, const Tensor& grad, int64_t dim,
                          int64_t start) {
  const Device d = grad.device();
  Tensor g = zeros(input_shape, dtype, d);
  Tensor window = Tensor::make_view(g, grad.shape(), g.strides(), start * g.strides()[dim]);
  KernelScope scope("narrow backward", d);
  dk::copy(d, grad, window);
  return g;
}

}  // namespace

Tensor view(const Tensor& t, Shape shape) {
  shape = infer_shape("view", t, std::move(shape));
  auto strides = view_strides(t, shape);
  MS_CHECK(strides.has_value(), "view: a tensor of shape ", shape_str(t.shape()), " and strides ",
           shape_str(t.strides()), " cannot be viewed as ", shape_str(shape),
           " without a copy; call reshape() (which copies) or contiguous() first");
  Tensor out = Tensor::make_view(t, shape, *strides, t.offset());
  if (needs_grad({&t})) {
    Shape in_shape = t.shape();
    record(out, "view", {t},
           [in_shape](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
  }
  return out;
}

Tensor reshape(const Tensor& t, Shape shape) {
  shape = infer_shape("reshape", t, std::move(shape));
  if (view_strides(t, shape)) return view(t, shape);
  return view(contiguous(t), shape);
}

Tensor flatten(const Tensor& t) {
  return reshape(t, {t.numel()});
}

Tensor permute(const Tensor& t, const Shape& dims) {
  MS_CHECK(static_cast<int64_t>(dims.size()) == t.dim(), "permute: ", dims.size(),
           " dims given for a tensor of rank ", t.dim(), " (shape ", shape_str(t.shape()), ")");
  Shape shape(dims.size()), strides(dims.size()), inverse(dims.size());
  std::vector<bool> used(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], t.dim(), "permute");
    MS_CHECK(!used[d], "permute: dim ", d, " repeated in ", shape_str(dims));
    used[d] = true;
    shape[i] = t.shape()[d];
    strides[i] = t.strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = Tensor::make_view(t, shape, strides, t.offset());
  if (needs_grad({&t})) {
    record(out, "permute", {t},
           [inverse](const Tensor& g) { return std::vector<Tensor>{permute(g, inverse)}; });
  }
  return out;
}

Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1) {
  dim0 = wrap_dim(dim0, t.dim(), "transpose");
  dim1 = wrap_dim(dim1, t.dim(), "transpose");
  Shape dims(t.dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[dim0], dims[dim1]);
  return permute(t, dims);
}

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  dim = wrap_dim(dim, t.dim(), "narrow");
  int64_t size = t.shape()[dim];
  MS_CHECK(start >= 0 && length >= 0 && start + length <= size, "narrow: range [", start, ", ",
           start + length, ") is out of bounds for dim ", dim, " of size ", size, " (shape ",
           shape_str(t.shape()), ")");
  Shape shape = t.shape();
  shape[dim] = length;
  Tensor out = Tensor::make_view(t, shape, t.strides(), t.offset() + start * t.strides()[dim]);
  if (needs_grad({&t})) {
    Shape in_shape = t.shape();
    DType dtype = t.dtype();
    record(out, "narrow", {t}, [in_shape, dtype, dim, start](const Tensor& g) {
      return std::vector<Tensor>{scatter_into_zeros(in_shape, dtype, g, dim, start)};
    });
  }
  return out;
}

Tensor select(const Tensor& t, int64_t dim, int64_t index) {
  dim = wrap_dim(dim, t.dim(), "select");
  int64_t size = t.shape()[dim];
  MS_CHECK(index >= -size && index < size, "select: index ", index, " is out of range for dim ",
           dim, " of size ", size);
  if (index < 0) index += size;
  return squeeze(narrow(t, dim, index, 1), dim);
}

std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim) {
  dim = wrap_dim(dim, t.dim(), "split");
  MS_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < t.shape()[dim]; start += split_size)
    parts.push_back(narrow(t, dim, start, std::min(split_size, t.shape()[dim] - start)));
  return parts;
}

std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim) {
  MS_CHECK(chunks > 0, "chunk: number of chunks must be positive, got ", chunks);
  dim = wrap_dim(dim, t.dim(), "chunk");
  // As torch.chunk: every chunk has ceil(size / chunks) rows but the last.
  int64_t size = t.shape()[dim];
  return split(t, std::max<int64_t>((size + chunks - 1) / chunks, 1), dim);
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  dim = wrap_dim(dim, t.dim(), "squeeze");
  MS_CHECK(t.shape()[dim] == 1, "squeeze: dim ", dim, " has size ", t.shape()[dim],
           ", not 1 (shape ", shape_str(t.shape()), ")");
  Shape shape = t.shape(), strides = t.strides();
  shape.erase(shape.begin() + dim);
  strides.erase(strides.begin() + dim);
  Tensor out = Tensor::make_view(t, shape, strides, t.offset());
  if (needs_grad({&t})) {
    record(out, "squeeze", {t},
           [dim](const Tensor& g) { return std::vector<Tensor>{unsqueeze(g, dim)}; });
  }
  return out;
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  dim = wrap_dim(dim, t.dim() + 1, "unsqueeze");
  Shape shape = t.shape(), strides = t.strides();
  int64_t stride = dim < t.dim() ? t.strides()[dim] * t.shape()[dim] : 1;
  shape.insert(shape.begin() + dim, 1);
  strides.insert(strides.begin() + dim, stride);
  Tensor out = Tensor::make_view(t, shape, strides, t.offset());
  if (needs_grad({&t})) {
    record(out, "unsqueeze", {t},
           [dim](const Tensor& g) { return std::vector<Tensor>{squeeze(g, dim)}; });
  }
  return out;
}

Tensor expand(const Tensor& t, const Shape& shape) {
  MS_CHECK(static_cast<int64_t>(shape.size()) >= t.dim(), "expand: cannot expand shape ",
           shape_str(t.shape()), " to fewer dims ", shape_str(shape));
  size_t lead = shape.size() - t.shape().size();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < t.shape().size(); ++i) {
    int64_t from = t.shape()[i], to = shape[lead + i];
    MS_CHECK(from == to || from == 1, "expand: shape ", shape_str(t.shape()),
             " cannot be broadcast to ", shape_str(shape), " (dim ", i, ": ", from, " vs ", to,
             "; only size-1 dims expand)");
    strides[lead + i] = from == to ? t.strides()[i] : 0;
  }
  Tensor out = Tensor::make_view(t, shape, strides, t.offset());
  if (needs_grad({&t})) {
    Shape in_shape = t.shape();
    record(out, "expand", {t},
           [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  }
  return out;
}

Tensor detach(const Tensor& t) {
  return Tensor::make_view(t, t.shape(), t.strides(), t.offset());
}

Tensor clone(const Tensor& t) {
  const Device d = t.device();
  Tensor out = Tensor::empty(t.shape(), t.dtype(), d);
  {
    KernelScope scope("clone", d);
    dk::copy(d, t, out);
  }
  // A copy holds what its source held on this rank: the same placements (the
  // autograd engine clones a leaf's first gradient, which may still owe a sum).
  copy_placements(out, t);
  if (needs_grad({&t})) {
    record(out, "clone", {t}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  }
  return out;
}

Tensor contiguous(const Tensor& t) {
  return t.is_contiguous() ? t : clone(t);
}

Tensor to(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  const Device d = t.device();
  Tensor out = Tensor::empty(t.shape(), dtype, d);
  {
    KernelScope scope("to", d);
    dk::copy(d, t, out);
  }
  // Differentiable between any two float dtypes: the gradient is cast back to
  // the input's dtype, which is how a 16-bit tensor gets a 16-bit gradient
  // (autograd/mixed.h).
  if (is_float_dtype(dtype) && is_float_dtype(t.dtype()) && needs_grad({&t})) {
    DType from = t.dtype();
    record(out, "to", {t}, [from](const Tensor& g) { return std::vector<Tensor>{to(g, from)}; });
  }
  return out;
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MS_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape shape = first.shape();
  shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    bool compatible = t.dim() == first.dim() && t.dtype() == first.dtype();
    for (int64_t d = 0; compatible && d < t.dim(); ++d)
      compatible = d == dim || t.shape()[d] == first.shape()[d];
    MS_CHECK(compatible, "cat: tensor ", i, " has shape ", shape_str(t.shape()), " (",
             dtype_name(t.dtype()), "), incompatible with tensor 0's ", shape_str(first.shape()),
             " (", dtype_name(first.dtype()), ") outside dim ", dim);
    shape[dim] += t.shape()[dim];
  }
  const Device d = first.device();
  for (const Tensor& t : tensors) op_device("cat", {&first, &t});
  Tensor out = Tensor::empty(shape, first.dtype(), d);
  KernelScope scope("cat", d);
  std::vector<int64_t> starts;
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    Tensor part = Tensor::make_view(out, t.shape(), out.strides(), start * out.strides()[dim]);
    dk::copy(d, t, part);
    starts.push_back(start);
    start += t.shape()[dim];
  }
  bool any = false;
  for (const Tensor& t : tensors) any = any || needs_grad({&t});
  if (any) {
    std::vector<int64_t> sizes;
    for (const Tensor& t : tensors) sizes.push_back(t.shape()[dim]);
    record(out, "cat", tensors, [starts, sizes, dim](const Tensor& g) {
      std::vector<Tensor> grads;
      for (size_t i = 0; i < starts.size(); ++i)
        grads.push_back(narrow(g, dim, starts[i], sizes[i]));
      return grads;
    });
  }
  return out;
}

}  // namespace ms
