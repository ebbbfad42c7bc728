#include <cuda/std/limits>

#include "tensor/cuda/kernel_util.cuh"
#include "tensor/cuda/softmax.h"

namespace ms::cuda {

namespace {

constexpr int kThreads = 256;

using detail::block_row_max_sum;
using detail::MaxSum;

template <typename T, bool kLog>
__global__ void softmax_forward_kernel(T* out, const T* inp, int64_t C) {
  const T* x = inp + blockIdx.x * C;
  T* y = out + blockIdx.x * C;
  const MaxSum<T> ms = block_row_max_sum(x, C);
  if (kLog) {
    const T lse = ms.m + log(ms.s);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] - lse;
  } else if (ms.m == -::cuda::std::numeric_limits<T>::infinity()) {
    // A fully masked row gives zeros rather than NaN, as the CPU twin.
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) y[c] = T(0);
  } else {
    const T inv = T(1) / ms.s;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) y[c] = exp(x[c] - ms.m) * inv;
  }
}

template <typename T, bool kLog>
__global__ void softmax_backward_kernel(T* dinp, const T* dout, const T* out, int64_t C) {
  __shared__ T shared[32];
  const int64_t off = blockIdx.x * C;
  T part = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    part += kLog ? dout[off + c] : dout[off + c] * out[off + c];
  const T dot = detail::block_sum(part, shared);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    if (kLog) {
      dinp[off + c] = dout[off + c] - exp(out[off + c]) * dot;
    } else {
      dinp[off + c] = out[off + c] * (dout[off + c] - dot);
    }
  }
}

}  // namespace

// Grid = N rows; N beyond 2^31 - 1 rows cannot occur for a (N, C) that fits in
// device memory with C >= 1... except C = 1 with 2^31 rows, which we refuse.
#define MS_ROWS_CHECK(N) \
  MS_CHECK((N) < (int64_t(1) << 31), "softmax: N = ", N, " rows exceeds the grid")

template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C, cudaStream_t stream) {
  if (N * C == 0) return;
  MS_ROWS_CHECK(N);
  softmax_forward_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(out, inp, C);
  MS_CUDA_KERNEL_CHECK("softmax_forward");
}

template <typename T>
void softmax_backward(T* dinp, const T* dout, const T* out, int64_t N, int64_t C,
                      cudaStream_t stream) {
  if (N * C == 0) return;
  MS_ROWS_CHECK(N);
  softmax_backward_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(dinp, dout, out, C);
  MS_CUDA_KERNEL_CHECK("softmax_backward");
}

template <typename T>
void log_softmax_forward(T* out, const T* inp, int64_t N, int64_t C, cudaStream_t stream) {
  if (N * C == 0) return;
  MS_ROWS_CHECK(N);
  softmax_forward_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(out, inp, C);
  MS_CUDA_KERNEL_CHECK("log_softmax_forward");
}

template <typename T>
void log_softmax_backward(T* dinp, const T* dout, const T* out, int64_t N, int64_t C,
                          cudaStream_t stream) {
  if (N * C == 0) return;
  MS_ROWS_CHECK(N);
  softmax_backward_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(dinp, dout, out, C);
  MS_CUDA_KERNEL_CHECK("log_softmax_backward");
}

#define MS_INSTANTIATE(T)                                                                    \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t, cudaStream_t);            \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, cudaStream_t); \
  template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t, cudaStream_t);        \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, cudaStream_t);
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
#undef MS_INSTANTIATE

}  // namespace ms::cuda
