#include "tensor/cuda/embedding.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per output element; consecutive threads take consecutive channels
// of the same row, so both the gather from weight and the store coalesce.
template <typename T>
__global__ void embedding_forward_kernel(T* out, const T* weight, const int32_t* idx, int64_t N,
                                         int64_t C) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    out[i] = weight[int64_t(idx[n]) * C + c];
  }
}

// The scatter: two tokens with the same id add into the same row. atomicAdd
// is the simplest correct answer (llm.c's encoder_backward started the same
// way before sorting tokens by id to make it deterministic).
template <typename T>
__global__ void embedding_backward_kernel(T* dweight, const T* dout, const int32_t* idx, int64_t N,
                                          int64_t C) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    atomicAdd(&dweight[int64_t(idx[n]) * C + c], dout[i]);
  }
}

}  // namespace

template <typename T>
void embedding_forward(T* out, const T* weight, const int32_t* idx, int64_t N, int64_t C,
                       cudaStream_t stream) {
  if (N * C == 0) return;
  embedding_forward_kernel<<<detail::blocks_for(N * C, kThreads), kThreads, 0, stream>>>(
      out, weight, idx, N, C);
  MS_CUDA_KERNEL_CHECK("embedding_forward");
}

template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* idx, int64_t N, int64_t C,
                        cudaStream_t stream) {
  if (N * C == 0) return;
  embedding_backward_kernel<<<detail::blocks_for(N * C, kThreads), kThreads, 0, stream>>>(
      dweight, dout, idx, N, C);
  MS_CUDA_KERNEL_CHECK("embedding_backward");
}

template void embedding_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t,
                                       cudaStream_t);
template void embedding_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t,
                                        cudaStream_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t,
                                        cudaStream_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t,
                                         cudaStream_t);

}  // namespace ms::cuda
