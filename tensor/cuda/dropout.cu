#include "tensor/cuda/dropout.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

// A memory-bound map, grid-stride like gelu.cu.
template <typename T>
__global__ void dropout_apply_kernel(T* out, const T* x, const uint8_t* keep, T scale, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = keep[i] ? x[i] * scale : T(0);
}

constexpr int kThreads = 256;

}  // namespace

template <typename T>
void dropout_apply(T* out, const T* x, const uint8_t* keep, T scale, int64_t n,
                   cudaStream_t stream) {
  if (n == 0) return;
  dropout_apply_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, stream>>>(out, x, keep,
                                                                                 scale, n);
  MS_CUDA_KERNEL_CHECK("dropout_apply");
}

template void dropout_apply<float>(float*, const float*, const uint8_t*, float, int64_t,
                                   cudaStream_t);
template void dropout_apply<double>(double*, const double*, const uint8_t*, double, int64_t,
                                    cudaStream_t);

}  // namespace ms::cuda
