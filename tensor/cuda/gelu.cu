#include "tensor/cuda/gelu.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

// Pure memory-bound map: one read, one write per element, so the only thing
// that matters is coalescing (consecutive threads, consecutive elements) and
// enough blocks in flight. A grid-stride loop covers any n with a capped grid.
template <typename T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n) {
  const T k = T(0.7978845608028654);  // √(2/π)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    T x = inp[i];
    T u = k * (x + T(0.044715) * x * x * x);
    out[i] = T(0.5) * x * (T(1) + tanh(u));
  }
}

// d/dx [½x(1+tanh u)] = ½(1+tanh u) + ½x·sech²(u)·u',  u' = k(1 + 3·0.044715·x²)
template <typename T>
__global__ void gelu_backward_kernel(T* dinp, const T* dout, const T* inp, int64_t n) {
  const T k = T(0.7978845608028654);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    T x = inp[i];
    T u = k * (x + T(0.044715) * x * x * x);
    T th = tanh(u);
    T sech2 = T(1) - th * th;
    T grad = T(0.5) * (T(1) + th) + T(0.5) * x * sech2 * k * (T(1) + T(3 * 0.044715) * x * x);
    dinp[i] = grad * dout[i];
  }
}

constexpr int kThreads = 256;

}  // namespace

template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_forward_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(out, inp, n);
  MS_CUDA_KERNEL_CHECK("gelu_forward");
}

template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_backward_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(dinp, dout, inp,
                                                                                 n);
  MS_CUDA_KERNEL_CHECK("gelu_backward");
}

template void gelu_forward<float>(float*, const float*, int64_t, cudaStream_t);
template void gelu_forward<double>(double*, const double*, int64_t, cudaStream_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t, cudaStream_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t, cudaStream_t);

}  // namespace ms::cuda
