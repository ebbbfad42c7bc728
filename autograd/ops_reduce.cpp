// Reductions: sum, mean, max. Reduced dims are brought together (a permute
// plus copy only when they are not already adjacent), then one kernel reduces
// the middle axis of (outer, R, inner).
#include <algorithm>

#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"

namespace ms {

namespace {

struct ReducePlan {
  Tensor input;  // contiguous, reduced dims adjacent: (outer, R, inner)
  int64_t outer = 1, R = 1, inner = 1;
  Shape kept_shape;     // output shape with keepdim=true
  Shape dropped_shape;  // output shape with keepdim=false
};

ReducePlan plan_reduction(const char* op, const Tensor& t, Shape dims) {
  MS_CHECK(is_compute_dtype(t.dtype()), op, ": dtype ", dtype_name(t.dtype()),
           " is not a compute dtype (f32, f64)");
  for (int64_t& d : dims) d = wrap_dim(d, t.dim(), op);
  std::sort(dims.begin(), dims.end());
  MS_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), op, ": repeated dim in ",
           shape_str(dims));
  ReducePlan plan;
  plan.kept_shape = t.shape();
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (std::binary_search(dims.begin(), dims.end(), d)) {
      plan.kept_shape[d] = 1;
    } else {
      plan.dropped_shape.push_back(t.shape()[d]);
    }
  }
  int64_t first = dims.empty() ? 0 : dims.front();
  int64_t last = dims.empty() ? 0 : dims.back() + 1;  // reduced range [first, last)
  Tensor src = detach(t);
  if (last - first != static_cast<int64_t>(dims.size())) {
    // Not adjacent: move the kept dims first, the reduced ones last.
    Shape order;
    for (int64_t d = 0; d < t.dim(); ++d)
      if (!std::binary_search(dims.begin(), dims.end(), d)) order.push_back(d);
    order.insert(order.end(), dims.begin(), dims.end());
    src = permute(src, order);
    first = t.dim() - static_cast<int64_t>(dims.size());
    last = t.dim();
  }
  plan.input = contiguous(src);
  const Shape& s = plan.input.shape();
  for (int64_t d = 0; d < first; ++d) plan.outer *= s[d];
  for (int64_t d = first; d < last; ++d) plan.R *= s[d];
  for (int64_t d = last; d < t.dim(); ++d) plan.inner *= s[d];
  return plan;
}

Shape all_dims(const Tensor& t) {
  Shape dims(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) dims[d] = d;
  return dims;
}

}  // namespace

Tensor sum(const Tensor& t, const Shape& dims, bool keepdim) {
  if (auto d = mixed::result_dtype({&t}, "sum")) return mixed::down(sum(mixed::up(t), dims, keepdim), *d);
  ReducePlan plan = plan_reduction("sum", t, dims);
  const Device d = t.device();
  Tensor out = Tensor::empty(keepdim ? plan.kept_shape : plan.dropped_shape, t.dtype(), d);
  {
    KernelScope scope("sum", d);
    dispatch_compute(t.dtype(), "sum", [&](auto tag) {
      using T = decltype(tag);
      dk::reduce_sum<T>(d, plan.input.device_data<T>(), out.device_data<T>(), plan.outer, plan.R,
                        plan.inner);
    });
  }
  if (needs_grad({&t})) {
    record(out, "sum", {t}, [in_shape = t.shape(), kept = plan.kept_shape](const Tensor& g) {
      // Every input element contributed once: broadcast the gradient back.
      return std::vector<Tensor>{expand(reshape(g, kept), in_shape)};
    });
  }
  return out;
}

Tensor sum(const Tensor& t) {
  return sum(t, all_dims(t), false);
}

Tensor mean(const Tensor& t, const Shape& dims, bool keepdim) {
  Tensor s = sum(t, dims, keepdim);
  int64_t count = s.numel() == 0 ? 0 : t.numel() / s.numel();
  MS_CHECK(count > 0, "mean: reducing ", shape_str(t.shape()), " over ", shape_str(dims),
           " averages zero elements");
  return mul(s, 1.0 / static_cast<double>(count));
}

Tensor mean(const Tensor& t) {
  return mean(t, all_dims(t), false);
}

Tensor max(const Tensor& t, int64_t dim, bool keepdim) {
  if (auto d = mixed::result_dtype({&t}, "max")) return mixed::down(max(mixed::up(t), dim, keepdim), *d);
  dim = wrap_dim(dim, t.dim(), "max");
  MS_CHECK(t.dim() == 0 || t.shape()[dim] > 0, "max: dim ", dim, " of shape ", shape_str(t.shape()),
           " is empty");
  ReducePlan plan = plan_reduction("max", t, t.dim() == 0 ? Shape{} : Shape{dim});
  const Device d = t.device();
  Tensor out = Tensor::empty(keepdim ? plan.kept_shape : plan.dropped_shape, t.dtype(), d);
  Tensor argmax = Tensor::empty(plan.kept_shape, DType::I32, d);
  {
    KernelScope scope("max", d);
    dispatch_compute(t.dtype(), "max", [&](auto tag) {
      using T = decltype(tag);
      dk::reduce_max<T>(d, plan.input.device_data<T>(), out.device_data<T>(),
                        argmax.device_data<int32_t>(), plan.outer, plan.R, plan.inner);
    });
  }
  if (needs_grad({&t})) {
    record(out, "max", {t},
           [plan_outer = plan.outer, R = plan.R, inner = plan.inner, in_shape = t.shape(),
            argmax](const Tensor& g) {
             // The gradient goes to the (first) position that held the max.
             Tensor gc = contiguous(g);
             const Device d = op_device("max backward", {&gc, &argmax});
             Tensor grad = Tensor::empty(in_shape, gc.dtype(), d);
             KernelScope scope("max backward", d);
             dispatch_compute(gc.dtype(), "max backward", [&](auto tag) {
               using T = decltype(tag);
               dk::argmax_scatter<T>(d, grad.device_data<T>(), gc.device_data<T>(),
                                     argmax.device_data<int32_t>(), plan_outer, R, inner);
             });
             return std::vector<Tensor>{grad};
           });
  }
  return out;
}

Tensor max(const Tensor& t) {
  MS_CHECK(t.numel() > 0, "max: tensor of shape ", shape_str(t.shape()), " is empty");
  return max(flatten(t), 0, false);
}

}  // namespace ms
