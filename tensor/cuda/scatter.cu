#include "tensor/cuda/kernel_util.cuh"
#include "tensor/cuda/scatter.h"

namespace ms::cuda {

namespace {

// One thread per element of grad_in: each writes its own slot (the gradient
// or zero), so no memset and no atomics are needed.
template <typename T>
__global__ void argmax_scatter_kernel(T* grad_in, const T* grad_out, const int32_t* argmax,
                                      int64_t R, int64_t inner, int64_t n) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n;
       j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = j % inner, r = (j / inner) % R, o = j / (inner * R);
    grad_in[j] = argmax[o * inner + i] == r ? grad_out[o * inner + i] : T(0);
  }
}

constexpr int kThreads = 256;

}  // namespace

template <typename T>
void argmax_scatter(T* grad_in, const T* grad_out, const int32_t* argmax, int64_t outer, int64_t R,
                    int64_t inner, cudaStream_t stream) {
  const int64_t n = outer * R * inner;
  if (n == 0) return;
  argmax_scatter_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(
      grad_in, grad_out, argmax, R, inner, n);
  MS_CUDA_KERNEL_CHECK("argmax_scatter");
}

template void argmax_scatter<float>(float*, const float*, const int32_t*, int64_t, int64_t, int64_t,
                                    cudaStream_t);
template void argmax_scatter<double>(double*, const double*, const int32_t*, int64_t, int64_t,
                                     int64_t, cudaStream_t);

}  // namespace ms::cuda
