// Elementwise ops with numpy broadcasting. The backward of a broadcasting op
// sums the gradient back down to each input's shape (sum_to).
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"

namespace ms {

namespace {

// A stride-0 view of `t` as `shape` (no graph: the caller records one Node for the op).
Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  size_t lead = shape.size() - t.shape().size();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < t.shape().size(); ++i)
    strides[lead + i] = t.shape()[i] == shape[lead + i] ? t.strides()[i] : 0;
  return Tensor::make_view(t, shape, strides, t.offset());
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  MS_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ: ", dtype_name(a.dtype()), " ",
           shape_str(a.shape()), " vs ", dtype_name(b.dtype()), " ", shape_str(b.shape()),
           "; convert one with to()");
  MS_CHECK(is_compute_dtype(a.dtype()), op, ": dtype ", dtype_name(a.dtype()),
           " is not a compute dtype (f32, f64); convert with to()");
}

Tensor binary_forward(cpu::BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same_dtype(name, a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  const Device d = op_device(name, {&a, &b});
  Tensor out = Tensor::empty(shape, a.dtype(), d);
  KernelScope scope(name, d);
  dk::binary(d, op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  return out;
}

Tensor unary_forward(cpu::UnaryOp op, const char* name, const Tensor& a, double scalar = 0) {
  MS_CHECK(is_compute_dtype(a.dtype()), name, ": dtype ", dtype_name(a.dtype()),
           " is not a compute dtype (f32, f64); convert with to()");
  const Device d = a.device();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), d);
  KernelScope scope(name, d);
  dk::unary(d, op, a, out, scalar);
  return out;
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MS_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " do not broadcast (dim ", i, " of the result: ", da, " vs ", db,
             "; sizes must match or be 1)");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  size_t lead = t.shape().size() - shape.size();
  Shape dims;
  for (size_t i = 0; i < t.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && t.shape()[i] != 1))
      dims.push_back(static_cast<int64_t>(i));
  return reshape(sum(t, dims, /*keepdim=*/true), shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  const Placements placed = combine_sum("add", a, b);
  if (auto d = mixed::result_dtype({&a, &b}, "add"))
    return with_placements(mixed::down(add(mixed::up(a), mixed::up(b)), *d), placed);
  Tensor out = binary_forward(cpu::BinaryOp::Add, "add", a, b);
  if (needs_grad({&a, &b})) {
    record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
      return std::vector<Tensor>{sum_to(g, sa), sum_to(g, sb)};
    });
  }
  return with_placements(out, placed);
}

Tensor sub(const Tensor& a, const Tensor& b) {
  const Placements placed = combine_sum("sub", a, b);
  if (auto d = mixed::result_dtype({&a, &b}, "sub"))
    return with_placements(mixed::down(sub(mixed::up(a), mixed::up(b)), *d), placed);
  Tensor out = binary_forward(cpu::BinaryOp::Sub, "sub", a, b);
  if (needs_grad({&a, &b})) {
    record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
      return std::vector<Tensor>{sum_to(g, sa), sum_to(neg(g), sb)};
    });
  }
  return with_placements(out, placed);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  const Placements placed = combine_product("mul", a, b, false);
  if (auto d = mixed::result_dtype({&a, &b}, "mul"))
    return with_placements(mixed::down(mul(mixed::up(a), mixed::up(b)), *d), placed);
  Tensor out = binary_forward(cpu::BinaryOp::Mul, "mul", a, b);
  if (needs_grad({&a, &b})) {
    bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "mul", {a, b}, [a = detach(a), b = detach(b), ga, gb](const Tensor& g) {
      return std::vector<Tensor>{ga ? sum_to(mul(g, b), a.shape()) : Tensor(),
                                 gb ? sum_to(mul(g, a), b.shape()) : Tensor()};
    });
  }
  return with_placements(out, placed);
}

Tensor div(const Tensor& a, const Tensor& b) {
  const Placements placed = combine_product("div", a, b, true);
  if (auto d = mixed::result_dtype({&a, &b}, "div"))
    return with_placements(mixed::down(div(mixed::up(a), mixed::up(b)), *d), placed);
  Tensor out = binary_forward(cpu::BinaryOp::Div, "div", a, b);
  if (needs_grad({&a, &b})) {
    bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "div", {a, b},
           [sa = a.shape(), b = detach(b), out = detach(out), ga, gb](const Tensor& g) {
             // d(a/b)/da = 1/b;  d(a/b)/db = -a/b^2 = -out/b
             return std::vector<Tensor>{
                 ga ? sum_to(div(g, b), sa) : Tensor(),
                 gb ? sum_to(neg(div(mul(g, out), b)), b.shape()) : Tensor()};
           });
  }
  return with_placements(out, placed);
}

Tensor add(const Tensor& a, double s) {
  const Placements placed = keep_nonlinear("add (a scalar)", a);
  if (auto d = mixed::result_dtype({&a}, "add"))
    return with_placements(mixed::down(add(mixed::up(a), s), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::AddScalar, "add", a, s);
  if (needs_grad({&a}))
    record(out, "add_scalar", {a}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return with_placements(out, placed);
}

Tensor mul(const Tensor& a, double s) {
  const Placements placed = keep_linear("mul (by a scalar)", a);
  if (auto d = mixed::result_dtype({&a}, "mul"))
    return with_placements(mixed::down(mul(mixed::up(a), s), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::MulScalar, "mul", a, s);
  if (needs_grad({&a}))
    record(out, "mul_scalar", {a}, [s](const Tensor& g) { return std::vector<Tensor>{mul(g, s)}; });
  return with_placements(out, placed);
}

Tensor neg(const Tensor& a) {
  const Placements placed = keep_linear("neg", a);
  if (auto d = mixed::result_dtype({&a}, "neg"))
    return with_placements(mixed::down(neg(mixed::up(a)), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::Neg, "neg", a);
  if (needs_grad({&a}))
    record(out, "neg", {a}, [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
  return with_placements(out, placed);
}

Tensor exp(const Tensor& a) {
  const Placements placed = keep_nonlinear("exp", a);
  if (auto d = mixed::result_dtype({&a}, "exp"))
    return with_placements(mixed::down(exp(mixed::up(a)), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::Exp, "exp", a);
  if (needs_grad({&a})) {
    record(out, "exp", {a},
           [out = detach(out)](const Tensor& g) { return std::vector<Tensor>{mul(g, out)}; });
  }
  return with_placements(out, placed);
}

Tensor log(const Tensor& a) {
  const Placements placed = keep_nonlinear("log", a);
  if (auto d = mixed::result_dtype({&a}, "log"))
    return with_placements(mixed::down(log(mixed::up(a)), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::Log, "log", a);
  if (needs_grad({&a})) {
    record(out, "log", {a},
           [a = detach(a)](const Tensor& g) { return std::vector<Tensor>{div(g, a)}; });
  }
  return with_placements(out, placed);
}

Tensor tanh(const Tensor& a) {
  const Placements placed = keep_nonlinear("tanh", a);
  if (auto d = mixed::result_dtype({&a}, "tanh"))
    return with_placements(mixed::down(tanh(mixed::up(a)), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::Tanh, "tanh", a);
  if (needs_grad({&a})) {
    record(out, "tanh", {a}, [out = detach(out)](const Tensor& g) {
      // d tanh = 1 - tanh^2
      return std::vector<Tensor>{mul(g, add(neg(mul(out, out)), 1.0))};
    });
  }
  return with_placements(out, placed);
}

Tensor sqrt(const Tensor& a) {
  const Placements placed = keep_nonlinear("sqrt", a);
  if (auto d = mixed::result_dtype({&a}, "sqrt"))
    return with_placements(mixed::down(sqrt(mixed::up(a)), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::Sqrt, "sqrt", a);
  if (needs_grad({&a})) {
    record(out, "sqrt", {a}, [out = detach(out)](const Tensor& g) {
      return std::vector<Tensor>{div(mul(g, 0.5), out)};
    });
  }
  return with_placements(out, placed);
}

Tensor pow(const Tensor& a, double exponent) {
  const Placements placed = keep_nonlinear("pow", a);
  if (auto d = mixed::result_dtype({&a}, "pow"))
    return with_placements(mixed::down(pow(mixed::up(a), exponent), *d), placed);
  Tensor out = unary_forward(cpu::UnaryOp::PowScalar, "pow", a, exponent);
  if (needs_grad({&a})) {
    record(out, "pow", {a}, [a = detach(a), exponent](const Tensor& g) {
      return std::vector<Tensor>{mul(g, mul(pow(a, exponent - 1), exponent))};
    });
  }
  return with_placements(out, placed);
}

// ---- in place ----

static void check_inplace(const char* op, const Tensor& t) {
  MS_CHECK(!(grad_enabled() && t.requires_grad()), op,
           ": in-place update of a tensor that "
           "requires grad (shape ",
           shape_str(t.shape()),
           ") would corrupt the graph; do it "
           "inside a NoGradGuard");
  MS_CHECK(t.is_contiguous(), op, ": the destination must be contiguous, got shape ",
           shape_str(t.shape()), " strides ", shape_str(t.strides()));
}

void fill_(Tensor& t, double value) {
  check_inplace("fill_", t);
  KernelScope scope("fill_", t.device());
  dk::fill(t.device(), t, value);
}

void copy_(Tensor& dst, const Tensor& src) {
  check_inplace("copy_", dst);
  MS_CHECK(dst.shape() == src.shape(), "copy_: shapes differ: destination ", shape_str(dst.shape()),
           ", source ", shape_str(src.shape()));
  // Across devices the bytes move with to() (a host<->device transfer), then
  // the destination's device converts dtype and lays them out.
  const Tensor s = src.device() == dst.device() ? src : src.to(Device::CPU).to(dst.device());
  KernelScope scope("copy_", dst.device());
  dk::copy(dst.device(), s, dst);
}

void add_(Tensor& dst, const Tensor& src, double alpha) {
  check_inplace("add_", dst);
  // Dtypes may differ when a 16-bit one is involved: the sum is formed in f32
  // and rounded once into dst (a 16-bit gradient accumulating into an f32
  // buffer, or 16-bit micro-step gradients summed in 16-bit).
  const bool same_dtype = dst.dtype() == src.dtype();
  MS_CHECK(dst.shape() == src.shape() &&
               (same_dtype || mixed::is_half(dst.dtype()) || mixed::is_half(src.dtype())),
           "add_: destination ", shape_str(dst.shape()), " ", dtype_name(dst.dtype()),
           " vs source ", shape_str(src.shape()), " ", dtype_name(src.dtype()),
           "; shapes must match, and dtypes too unless one is bf16/f16");
  const Device d = op_device("add_", {&dst, &src});
  // The CUDA axpy reads src contiguously; Sim asks the same of the device path.
  const Tensor s = d == Device::CPU ? src : contiguous(src);
  KernelScope scope("add_", d);
  dk::axpy(d, dst, s, alpha);
}

void mul_(Tensor& t, double s) {
  check_inplace("mul_", t);
  const Device d = t.device();
  KernelScope scope("mul_", d);
  if (mixed::is_half(t.dtype())) {
    dk::scale_rounded(d, t, s);  // in f32, rounded back to 16-bit
    return;
  }
  dk::unary(d, cpu::UnaryOp::MulScalar, t, t, s);
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  std::vector<double> va = a.to_vector(), vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::fabs(va[i] - vb[i]) <= atol + rtol * std::fabs(vb[i]))) return false;
  return true;
}

}  // namespace ms
