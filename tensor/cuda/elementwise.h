// Elementwise kernels on the GPU: the twin of tensor/cpu/elementwise.h.
//
// Two layers. The Tensor functions have the CPU twin's exact signatures (plus
// the stream, last, never defaulted) and expect every tensor's bytes on the
// device; the dispatch switches on the device and calls one or the other.
// Below them, raw-pointer kernels over an explicit (shape, strides) geometry,
// which the Tensor layer calls and the [cuda] tests check without a device
// Tensor (so they do not depend on the allocator).
#pragma once
#include <cstdint>

#include "tensor/cpu/elementwise.h"  // BinaryOp, UnaryOp: one enum for both devices
#include "tensor/cuda/stream.h"
#include "tensor/dtype.h"
#include "tensor/tensor.h"

namespace ms::cuda {

using cpu::BinaryOp;
using cpu::UnaryOp;

// ---- Tensor twins (same preconditions as the CPU's: inputs already
// broadcast to out's shape, expanded dims have stride 0; out contiguous) ----
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, cudaStream_t stream);
void unary(UnaryOp op, const Tensor& a, Tensor& out, double scalar, cudaStream_t stream);
// The CPU twin's scalar defaults to 0; a default cannot precede the stream.
void unary(UnaryOp op, const Tensor& a, Tensor& out, cudaStream_t stream);
void copy(const Tensor& src, Tensor& dst, cudaStream_t stream);
void fill(Tensor& t, double value, cudaStream_t stream);
void axpy(Tensor& dst, const Tensor& src, double alpha, cudaStream_t stream);
void scale_rounded(Tensor& t, double s, cudaStream_t stream);

// ---- raw-pointer layer ----
constexpr int kMaxDims = 8;

// The iteration space: out is contiguous over shape; a and b are read with
// their own strides (in elements; 0 on broadcast dims).
struct Strided {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride_a[kMaxDims] = {};
  int64_t stride_b[kMaxDims] = {};
  bool contiguous = true;  // a and b both contiguous: the flat fast path
};
// Refuses more than kMaxDims dims (an ms::Error naming the shape).
Strided make_strided(const Shape& shape, const Shape& stride_a, const Shape& stride_b);

template <typename T>
void binary_strided(BinaryOp op, const T* a, const T* b, T* out, const Strided& g,
                    cudaStream_t stream);
template <typename T>
void unary_strided(UnaryOp op, const T* a, T* out, const Strided& g, T scalar, cudaStream_t stream);
// out (contiguous) = a read through g.stride_a, any element type of 2, 4 or 8 bytes.
void copy_strided(const void* a, void* out, size_t elem_size, const Strided& g,
                  cudaStream_t stream);
// dst[i] = src[i] converted, n contiguous elements, any pair of F32, F64, BF16,
// F16, I32; into bf16/f16 rounded to nearest even from f32, as the CPU's.
void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n,
             cudaStream_t stream);
// p[i] = value (rounded into p's dtype), n contiguous elements.
void fill_n(void* p, DType dtype, int64_t n, double value, cudaStream_t stream);
// dst[i] += alpha·src[i] over n contiguous elements. Same dtype F32/F64: in that
// dtype. Mixed: in f64 when either side is f64, else in f32 (a 16-bit side:
// both read as f32, as the CPU twin), the sum rounded once into dst.
void axpy_n(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, double alpha,
            cudaStream_t stream);
// p[i] = round(float(p[i]) · s) for bf16/f16/f32 p; p[i] · s in f64 for f64 p.
void scale_n(void* p, DType dtype, int64_t n, double s, cudaStream_t stream);

}  // namespace ms::cuda
