#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "tensor/cuda/allocator.h"
#include "tensor/cuda/elementwise.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

constexpr int kThreads = 256;

// Flat output index -> element offsets of a and b: the CPU twin's odometer,
// one division per dim. Memory-bound kernels can afford it; the contiguous
// flat path skips it entirely.
__device__ inline void offsets(const Strided& g, int64_t i, int64_t* oa, int64_t* ob) {
  int64_t a = 0, b = 0;
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % g.shape[d];
    i /= g.shape[d];
    a += idx * g.stride_a[d];
    b += idx * g.stride_b[d];
  }
  *oa = a;
  *ob = b;
}

int64_t numel_of(const Strided& g) {
  int64_t n = 1;
  for (int d = 0; d < g.ndim; ++d) n *= g.shape[d];
  return n;
}

template <typename T>
__device__ inline T apply(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Add:
      return x + y;
    case BinaryOp::Sub:
      return x - y;
    case BinaryOp::Mul:
      return x * y;
    case BinaryOp::Div:
      return x / y;
  }
  return x;
}

template <typename T>
__device__ inline T apply(UnaryOp op, T x, T s) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return exp(x);
    case UnaryOp::Log:
      return log(x);
    case UnaryOp::Tanh:
      return tanh(x);
    case UnaryOp::Sqrt:
      return sqrt(x);
    case UnaryOp::Relu:
      return x > T(0) ? x : T(0);
    case UnaryOp::AddScalar:
      return x + s;
    case UnaryOp::MulScalar:
      return x * s;
    case UnaryOp::PowScalar:
      return pow(x, s);
  }
  return x;
}

// The op is a kernel argument, not a template parameter: the switch is on a
// value uniform across the grid, so every warp takes the same branch and the
// cost is a few instructions per element of a memory-bound loop.
template <typename T>
__global__ void binary_kernel(BinaryOp op, const T* a, const T* b, T* out, Strided g, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t oa = i, ob = i;
    if (!g.contiguous) offsets(g, i, &oa, &ob);
    out[i] = apply(op, a[oa], b[ob]);
  }
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* a, T* out, Strided g, int64_t n, T s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t oa = i, ob = i;
    if (!g.contiguous) offsets(g, i, &oa, &ob);
    out[i] = apply(op, a[oa], s);
  }
}

template <typename E>
__global__ void copy_kernel(const E* a, E* out, Strided g, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t oa = i, ob = i;
    if (!g.contiguous) offsets(g, i, &oa, &ob);
    out[i] = a[oa];
  }
}

// Loads widen to double (exact for every dtype here); stores narrow the CPU
// twin's way: to f32 first, then round-to-nearest-even into bf16/f16.
__device__ inline double load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32:
      return static_cast<const float*>(p)[i];
    case DType::F64:
      return static_cast<const double*>(p)[i];
    case DType::BF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::F16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case DType::I32:
      return static_cast<const int32_t*>(p)[i];
  }
  return 0;
}

__device__ inline void store(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F32:
      static_cast<float*>(p)[i] = float(v);
      return;
    case DType::F64:
      static_cast<double*>(p)[i] = v;
      return;
    case DType::BF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(float(v));
      return;
    case DType::F16:
      static_cast<__half*>(p)[i] = __float2half_rn(float(v));
      return;
    case DType::I32:
      static_cast<int32_t*>(p)[i] = int32_t(v);
      return;
  }
}

__global__ void convert_kernel(const void* src, DType st, void* dst, DType dt, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(dst, dt, i, load(src, st, i));
}

__global__ void fill_kernel(void* p, DType t, int64_t n, double v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(p, t, i, v);
}

template <typename T>
__global__ void axpy_kernel(T* dst, const T* src, int64_t n, T alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] += alpha * src[i];
}

// a·b rounded on its own: nvcc would otherwise contract d + a·b into one FMA,
// whose single rounding can differ from the CPU twin's two in the last bit
// (and then, at a tie, in the bf16/f16 result).
__device__ inline float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ inline double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}

// Mixed dtypes: the sum in Acc, one rounding into dst. Acc is f32 when the
// wider side is bf16/f16/f32 (mixed precision's gradient accumulation, as the
// CPU twin), f64 when either side is f64 (an f32 sum would throw away 29 bits
// of the f64 side).
template <typename Acc>
__global__ void axpy_mixed_kernel(void* dst, DType dt, const void* src, DType st, int64_t n,
                                  Acc alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Acc d = Acc(load(dst, dt, i)), s = Acc(load(src, st, i));
    store(dst, dt, i, double(d + mul_rn(alpha, s)));
  }
}

// p *= s in Acc (f32 for bf16/f16/f32 storage, as the CPU twin; f64 for f64).
template <typename Acc>
__global__ void scale_kernel(void* p, DType t, int64_t n, Acc s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(p, t, i, double(mul_rn(Acc(load(p, t, i)), s)));
}

bool is_float_compute(DType t) {
  return t == DType::F32 || t == DType::F64;
}

}  // namespace

Strided make_strided(const Shape& shape, const Shape& stride_a, const Shape& stride_b) {
  MS_CHECK(shape.size() <= size_t(kMaxDims), "cuda elementwise: shape ", shape_str(shape), " has ",
           shape.size(), " dims; at most ", kMaxDims);
  Strided g;
  g.ndim = int(shape.size());
  const Shape cs = contiguous_strides(shape);
  for (int d = 0; d < g.ndim; ++d) {
    g.shape[d] = shape[d];
    g.stride_a[d] = stride_a[d];
    g.stride_b[d] = stride_b[d];
    // A size-1 dim's stride never matters.
    if (shape[d] != 1 && (stride_a[d] != cs[d] || stride_b[d] != cs[d])) g.contiguous = false;
  }
  return g;
}

template <typename T>
void binary_strided(BinaryOp op, const T* a, const T* b, T* out, const Strided& g,
                    cudaStream_t stream) {
  const int64_t n = numel_of(g);
  if (n == 0) return;
  binary_kernel<T><<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(op, a, b, out, g, n);
  MS_CUDA_KERNEL_CHECK("binary");
}

template <typename T>
void unary_strided(UnaryOp op, const T* a, T* out, const Strided& g, T scalar,
                   cudaStream_t stream) {
  const int64_t n = numel_of(g);
  if (n == 0) return;
  unary_kernel<T>
      <<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(op, a, out, g, n, scalar);
  MS_CUDA_KERNEL_CHECK("unary");
}

void copy_strided(const void* a, void* out, size_t elem_size, const Strided& g,
                  cudaStream_t stream) {
  const int64_t n = numel_of(g);
  if (n == 0) return;
  const unsigned blocks = detail::blocks_for(n, kThreads);
  switch (elem_size) {
    case 2:
      copy_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint16_t*>(a),
                                                   static_cast<uint16_t*>(out), g, n);
      break;
    case 4:
      copy_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint32_t*>(a),
                                                   static_cast<uint32_t*>(out), g, n);
      break;
    case 8:
      copy_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint64_t*>(a),
                                                   static_cast<uint64_t*>(out), g, n);
      break;
    default:
      MS_CHECK(false, "copy_strided: element size ", elem_size, " (expected 2, 4 or 8)");
  }
  MS_CUDA_KERNEL_CHECK("copy");
}

void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n,
             cudaStream_t stream) {
  if (n == 0) return;
  if (src_dtype == dst_dtype) {
    MS_CUDA_CALL(cudaMemcpyAsync(dst, src, size_t(n) * dtype_size(src_dtype),
                                 cudaMemcpyDeviceToDevice, stream));
    return;
  }
  convert_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(src, src_dtype, dst,
                                                                           dst_dtype, n);
  MS_CUDA_KERNEL_CHECK("convert");
}

void fill_n(void* p, DType dtype, int64_t n, double value, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(p, dtype, n, value);
  MS_CUDA_KERNEL_CHECK("fill");
}

void axpy_n(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, double alpha,
            cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = detail::blocks_for(n, kThreads);
  if (dst_dtype == src_dtype && dst_dtype == DType::F32) {
    axpy_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<float*>(dst),
                                                 static_cast<const float*>(src), n, float(alpha));
  } else if (dst_dtype == src_dtype && dst_dtype == DType::F64) {
    axpy_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<double*>(dst),
                                                 static_cast<const double*>(src), n, alpha);
  } else {
    MS_CHECK(dst_dtype != DType::I32 && src_dtype != DType::I32, "axpy: dtypes ",
             dtype_name(dst_dtype), " += ", dtype_name(src_dtype), " (expected floating point)");
    if (dst_dtype == DType::F64 || src_dtype == DType::F64)
      axpy_mixed_kernel<double>
          <<<blocks, kThreads, 0, stream>>>(dst, dst_dtype, src, src_dtype, n, alpha);
    else
      axpy_mixed_kernel<float>
          <<<blocks, kThreads, 0, stream>>>(dst, dst_dtype, src, src_dtype, n, float(alpha));
  }
  MS_CUDA_KERNEL_CHECK("axpy");
}

void scale_n(void* p, DType dtype, int64_t n, double s, cudaStream_t stream) {
  MS_CHECK(dtype != DType::I32, "scale_rounded: dtype i32 (expected f32, f64, bf16 or f16)");
  if (n == 0) return;
  const unsigned blocks = detail::blocks_for(n, kThreads);
  if (dtype == DType::F64)
    scale_kernel<double><<<blocks, kThreads, 0, stream>>>(p, dtype, n, s);
  else
    scale_kernel<float><<<blocks, kThreads, 0, stream>>>(p, dtype, n, float(s));
  MS_CUDA_KERNEL_CHECK("scale_rounded");
}

// ---- Tensor twins ----

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, cudaStream_t stream) {
  MS_CHECK(out.is_contiguous() && a.shape() == out.shape() && b.shape() == out.shape() &&
               a.dtype() == out.dtype() && b.dtype() == out.dtype(),
           "cuda binary: shapes ", shape_str(a.shape()), ", ", shape_str(b.shape()), " -> ",
           shape_str(out.shape()));
  const Strided g = make_strided(out.shape(), a.strides(), b.strides());
  if (out.dtype() == DType::F32) {
    binary_strided(op, static_cast<const float*>(a.device_raw_data()),
                   static_cast<const float*>(b.device_raw_data()),
                   static_cast<float*>(out.device_raw_data()), g, stream);
  } else {
    MS_CHECK(out.dtype() == DType::F64, "cuda binary: dtype ", dtype_name(out.dtype()),
             " (expected f32 or f64)");
    binary_strided(op, static_cast<const double*>(a.device_raw_data()),
                   static_cast<const double*>(b.device_raw_data()),
                   static_cast<double*>(out.device_raw_data()), g, stream);
  }
}

void unary(UnaryOp op, const Tensor& a, Tensor& out, double scalar, cudaStream_t stream) {
  MS_CHECK(out.is_contiguous() && a.shape() == out.shape() && a.dtype() == out.dtype(),
           "cuda unary: shapes ", shape_str(a.shape()), " -> ", shape_str(out.shape()));
  const Strided g = make_strided(out.shape(), a.strides(), a.strides());
  if (out.dtype() == DType::F32) {
    unary_strided(op, static_cast<const float*>(a.device_raw_data()),
                  static_cast<float*>(out.device_raw_data()), g, float(scalar), stream);
  } else {
    MS_CHECK(out.dtype() == DType::F64, "cuda unary: dtype ", dtype_name(out.dtype()),
             " (expected f32 or f64)");
    unary_strided(op, static_cast<const double*>(a.device_raw_data()),
                  static_cast<double*>(out.device_raw_data()), g, scalar, stream);
  }
}

void unary(UnaryOp op, const Tensor& a, Tensor& out, cudaStream_t stream) {
  unary(op, a, out, 0.0, stream);
}

void copy(const Tensor& src, Tensor& dst, cudaStream_t stream) {
  MS_CHECK(src.shape() == dst.shape(), "cuda copy: shapes ", shape_str(src.shape()), " -> ",
           shape_str(dst.shape()));
  MS_CHECK(dst.is_contiguous(), "cuda copy: the destination must be contiguous");
  const int64_t n = src.numel();
  if (src.is_contiguous()) {
    convert(src.device_raw_data(), src.dtype(), dst.device_raw_data(), dst.dtype(), n, stream);
    return;
  }
  const Strided g = make_strided(src.shape(), src.strides(), src.strides());
  if (src.dtype() == dst.dtype()) {
    copy_strided(src.device_raw_data(), dst.device_raw_data(), dtype_size(src.dtype()), g, stream);
    return;
  }
  // Strided and converting: gather into a contiguous scratch of src's dtype,
  // then convert. The scratch goes back to the caching allocator before the
  // two kernels have run: safe on the main stream (tensor/cuda/allocator.h).
  Scratch tmp(size_t(n) * dtype_size(src.dtype()), stream);
  copy_strided(src.device_raw_data(), tmp.get(), dtype_size(src.dtype()), g, stream);
  convert(tmp.get(), src.dtype(), dst.device_raw_data(), dst.dtype(), n, stream);
}

void fill(Tensor& t, double value, cudaStream_t stream) {
  MS_CHECK(t.is_contiguous(), "cuda fill needs a contiguous tensor");
  fill_n(t.device_raw_data(), t.dtype(), t.numel(), value, stream);
}

void axpy(Tensor& dst, const Tensor& src, double alpha, cudaStream_t stream) {
  MS_CHECK(dst.is_contiguous() && src.is_contiguous() && dst.shape() == src.shape(),
           "cuda axpy: contiguous tensors of one shape expected, got ", shape_str(dst.shape()),
           " += ", shape_str(src.shape()));
  MS_CHECK(is_float_compute(dst.dtype()) || dst.dtype() == DType::BF16 || dst.dtype() == DType::F16,
           "cuda axpy: dtype ", dtype_name(dst.dtype()));
  axpy_n(dst.device_raw_data(), dst.dtype(), src.device_raw_data(), src.dtype(), dst.numel(), alpha,
         stream);
}

void scale_rounded(Tensor& t, double s, cudaStream_t stream) {
  MS_CHECK(t.is_contiguous(), "cuda scale_rounded needs a contiguous tensor");
  scale_n(t.device_raw_data(), t.dtype(), t.numel(), s, stream);
}

template void binary_strided<float>(BinaryOp, const float*, const float*, float*, const Strided&,
                                    cudaStream_t);
template void binary_strided<double>(BinaryOp, const double*, const double*, double*,
                                     const Strided&, cudaStream_t);
template void unary_strided<float>(UnaryOp, const float*, float*, const Strided&, float,
                                   cudaStream_t);
template void unary_strided<double>(UnaryOp, const double*, double*, const Strided&, double,
                                    cudaStream_t);

}  // namespace ms::cuda
