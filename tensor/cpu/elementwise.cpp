#include "tensor/cpu/elementwise.h"

#include <cmath>
#include <cstring>

namespace ms::cpu {

namespace {

// Work below this many elements is not worth waking OpenMP threads for.
constexpr int64_t kParallelGrain = 1 << 15;

// Calls body(out_index, a_offset, b_offset, n, a_inner_stride, b_inner_stride)
// once per innermost row of `shape`, walking an odometer over the outer dims.
template <typename Body>
void for_each_row(const Shape& shape, const Shape& sa, const Shape& sb, Body body) {
  int64_t ndim = static_cast<int64_t>(shape.size());
  if (ndim == 0) {
    body(0, 0, 0, 1, 0, 0);
    return;
  }
  int64_t inner = shape[ndim - 1], rows = shape_numel(shape) / std::max<int64_t>(inner, 1);
  if (inner == 0) return;
#pragma omp parallel for if (rows * inner > kParallelGrain) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, oa = 0, ob = 0;
    for (int64_t d = ndim - 2; d >= 0; --d) {
      int64_t i = rem % shape[d];
      rem /= shape[d];
      oa += i * sa[d];
      ob += i * sb[d];
    }
    body(r * inner, oa, ob, inner, sa[ndim - 1], sb[ndim - 1]);
  }
}

template <typename T, typename F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const T* pa = a.device_data<T>();
  const T* pb = b.device_data<T>();
  T* po = out.device_data<T>();
  int64_t n = out.numel();
  if (a.is_contiguous() && b.is_contiguous()) {
#pragma omp parallel for simd if (n > kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return;
  }
  for_each_row(out.shape(), a.strides(), b.strides(),
               [&](int64_t o, int64_t oa, int64_t ob, int64_t len, int64_t ia, int64_t ib) {
                 for (int64_t i = 0; i < len; ++i) po[o + i] = f(pa[oa + i * ia], pb[ob + i * ib]);
               });
}

template <typename T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  // One loop per op so the compiler vectorizes each without a switch inside.
  switch (op) {
    case BinaryOp::Add:
      return binary_loop<T>(a, b, out, [](T x, T y) { return x + y; });
    case BinaryOp::Sub:
      return binary_loop<T>(a, b, out, [](T x, T y) { return x - y; });
    case BinaryOp::Mul:
      return binary_loop<T>(a, b, out, [](T x, T y) { return x * y; });
    case BinaryOp::Div:
      return binary_loop<T>(a, b, out, [](T x, T y) { return x / y; });
  }
}

template <typename T, typename F>
void unary_loop(const Tensor& a, Tensor& out, F f) {
  const T* pa = a.device_data<T>();
  T* po = out.device_data<T>();
  int64_t n = out.numel();
  if (a.is_contiguous()) {
#pragma omp parallel for simd if (n > kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i]);
    return;
  }
  for_each_row(out.shape(), a.strides(), a.strides(),
               [&](int64_t o, int64_t oa, int64_t, int64_t len, int64_t ia, int64_t) {
                 for (int64_t i = 0; i < len; ++i) po[o + i] = f(pa[oa + i * ia]);
               });
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& a, Tensor& out, T s) {
  switch (op) {
    case UnaryOp::Neg:
      return unary_loop<T>(a, out, [](T x) { return -x; });
    case UnaryOp::Exp:
      return unary_loop<T>(a, out, [](T x) { return std::exp(x); });
    case UnaryOp::Log:
      return unary_loop<T>(a, out, [](T x) { return std::log(x); });
    case UnaryOp::Tanh:
      return unary_loop<T>(a, out, [](T x) { return std::tanh(x); });
    case UnaryOp::Sqrt:
      return unary_loop<T>(a, out, [](T x) { return std::sqrt(x); });
    case UnaryOp::Relu:
      return unary_loop<T>(a, out, [](T x) { return x > T(0) ? x : T(0); });
    case UnaryOp::AddScalar:
      return unary_loop<T>(a, out, [s](T x) { return x + s; });
    case UnaryOp::MulScalar:
      return unary_loop<T>(a, out, [s](T x) { return x * s; });
    case UnaryOp::PowScalar:
      return unary_loop<T>(a, out, [s](T x) { return std::pow(x, s); });
  }
}

void store(void* base, int64_t i, DType dtype, double v) {
  switch (dtype) {
    case DType::F32:
      static_cast<float*>(base)[i] = static_cast<float>(v);
      return;
    case DType::F64:
      static_cast<double*>(base)[i] = v;
      return;
    // Round once, from f32: the path mixed-precision training takes.
    case DType::BF16:
      static_cast<uint16_t*>(base)[i] = f32_to_bf16(static_cast<float>(v));
      return;
    case DType::F16:
      static_cast<uint16_t*>(base)[i] = f32_to_f16(static_cast<float>(v));
      return;
    case DType::I32:
      static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v);
      return;
  }
}

// The casts mixed precision runs on every step (f32 <-> bf16/f16, contiguous):
// one rounding per element, straight from f32. False for other pairs.
bool convert_contiguous(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  const DType s = src.dtype(), d = dst.dtype();
  if (s == DType::F32 && (d == DType::BF16 || d == DType::F16)) {
    const float* ps = src.device_data<float>();
    uint16_t* pd = dst.device_data<uint16_t>();
    if (d == DType::BF16) {
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
      for (int64_t i = 0; i < n; ++i) pd[i] = f32_to_bf16(ps[i]);
    } else {
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
      for (int64_t i = 0; i < n; ++i) pd[i] = f32_to_f16(ps[i]);
    }
    return true;
  }
  if ((s == DType::BF16 || s == DType::F16) && d == DType::F32) {
    const uint16_t* ps = src.device_data<uint16_t>();
    float* pd = dst.device_data<float>();
    if (s == DType::BF16) {
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
      for (int64_t i = 0; i < n; ++i) pd[i] = bf16_to_f32(ps[i]);
    } else {
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
      for (int64_t i = 0; i < n; ++i) pd[i] = f16_to_f32(ps[i]);
    }
    return true;
  }
  return false;
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  MS_ASSERT(out.is_contiguous() && a.shape() == out.shape() && b.shape() == out.shape(), "binary");
  dispatch_compute(out.dtype(), "binary op", [&](auto t) {
    using T = decltype(t);
    binary_typed<T>(op, a, b, out);
  });
}

void unary(UnaryOp op, const Tensor& a, Tensor& out, double scalar) {
  MS_ASSERT(out.is_contiguous() && a.shape() == out.shape(), "unary");
  dispatch_compute(out.dtype(), "unary op", [&](auto t) {
    using T = decltype(t);
    unary_typed<T>(op, a, out, static_cast<T>(scalar));
  });
}

void copy(const Tensor& src, Tensor& dst) {
  MS_ASSERT(src.shape() == dst.shape(), "copy shapes");
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.device_raw_data(), src.device_raw_data(), src.nbytes());
    return;
  }
  if (src.is_contiguous() && dst.is_contiguous() && convert_contiguous(src, dst)) return;
  if (src.dtype() == dst.dtype() && is_compute_dtype(src.dtype()) && dst.is_contiguous()) {
    dispatch_compute(src.dtype(), "copy", [&](auto t) {
      using T = decltype(t);
      unary_loop<T>(src, dst, [](T x) { return x; });
    });
    return;
  }
  // General path: any strides, any dtype pair, through double.
  const void* ps = src.device_raw_data();
  void* pd = dst.device_raw_data();
  for_each_row(src.shape(), src.strides(), dst.strides(),
               [&](int64_t, int64_t os, int64_t od, int64_t len, int64_t is, int64_t id) {
                 for (int64_t i = 0; i < len; ++i)
                   store(pd, od + i * id, dst.dtype(),
                         load_as_double(ps, os + i * is, src.dtype()));
               });
}

void fill(Tensor& t, double value) {
  MS_ASSERT(t.is_contiguous(), "fill needs a contiguous tensor");
  void* p = t.device_raw_data();
  int64_t n = t.numel();
  if (t.dtype() == DType::F32) {
    std::fill_n(static_cast<float*>(p), n, static_cast<float>(value));
  } else {
    for (int64_t i = 0; i < n; ++i) store(p, i, t.dtype(), value);
  }
}

void axpy(Tensor& dst, const Tensor& src, double alpha) {
  if (!is_compute_dtype(dst.dtype()) || src.dtype() != dst.dtype()) {
    // A 16-bit side: both read as f32, the sum rounded once into dst.
    MS_ASSERT(dst.is_contiguous() && dst.shape() == src.shape(), "axpy");
    Tensor a = Tensor::empty(dst.shape(), DType::F32), b = Tensor::empty(src.shape(), DType::F32);
    copy(dst, a);
    copy(src, b);
    axpy(a, b, alpha);
    copy(a, dst);
    return;
  }
  MS_ASSERT(dst.is_contiguous() && dst.shape() == src.shape() && dst.dtype() == src.dtype(),
            "axpy");
  dispatch_compute(dst.dtype(), "axpy", [&](auto t) {
    using T = decltype(t);
    T a = static_cast<T>(alpha);
    T* pd = dst.device_data<T>();
    const T* ps = src.device_data<T>();
    int64_t n = dst.numel();
    if (src.is_contiguous()) {
#pragma omp parallel for simd if (n > kParallelGrain) schedule(static)
      for (int64_t i = 0; i < n; ++i) pd[i] += a * ps[i];
    } else {
      for_each_row(src.shape(), contiguous_strides(src.shape()), src.strides(),
                   [&](int64_t o, int64_t, int64_t os, int64_t len, int64_t, int64_t is) {
                     for (int64_t i = 0; i < len; ++i) pd[o + i] += a * ps[os + i * is];
                   });
    }
  });
}

void scale_rounded(Tensor& t, double s) {
  MS_ASSERT(t.is_contiguous(), "scale_rounded");
  Tensor a = Tensor::empty(t.shape(), DType::F32);
  copy(t, a);
  unary(UnaryOp::MulScalar, a, a, s);
  copy(a, t);
}

}  // namespace ms::cpu
