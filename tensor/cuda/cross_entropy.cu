#include <cuda/std/limits>

#include "tensor/cuda/allocator.h"
#include "tensor/cuda/cross_entropy.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

constexpr int kThreads = 512;  // V = 50257: ~100 elements per thread per pass

// log Σ exp(x) of one row, in every thread of the block.
template <typename T>
__device__ T row_lse(const T* x, int64_t V) {
  const detail::MaxSum<T> acc = detail::block_row_max_sum(x, V);
  return acc.m + log(acc.s);
}

// The per-row losses are summed in double with one atomicAdd per row: the
// order varies, the double sum's last bits do not matter at f32 precision.
template <typename T>
__global__ void cross_entropy_forward_kernel(T* lse, double* total, const T* logits,
                                             const int32_t* targets, int64_t V) {
  const T* x = logits + blockIdx.x * V;
  const T l = row_lse(x, V);
  if (threadIdx.x == 0) {
    lse[blockIdx.x] = l;
    atomicAdd(total, double(l) - double(x[targets[blockIdx.x]]));
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const T* lse,
                                              const int32_t* targets, T scale, int64_t V) {
  const int64_t off = blockIdx.x * V;
  const T l = lse[blockIdx.x];
  const int32_t tgt = targets[blockIdx.x];
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    dlogits[off + v] = (exp(logits[off + v] - l) - (v == tgt ? T(1) : T(0))) * scale;
}

// Read the row once for (max, Σexp), once more to write the gradient over it.
// The target logit is read before any thread overwrites the row: the barrier
// inside row_lse orders thread 0's read of x[target] before anyone writes.
template <typename T>
__global__ void fused_classifier_kernel(T* logits, T* losses, const int32_t* targets, T scale,
                                        int64_t V) {
  T* x = logits + blockIdx.x * V;
  const int32_t tgt = targets[blockIdx.x];
  const T target_logit = x[tgt];  // every thread reads it before the barrier in row_lse
  const T l = row_lse(x, V);
  if (threadIdx.x == 0) losses[blockIdx.x] = l - target_logit;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    x[v] = (exp(x[v] - l) - (v == tgt ? T(1) : T(0))) * scale;
}

void check_rows(int64_t N, const char* what) {
  MS_CHECK(N < (int64_t(1) << 31), what, ": N = ", N, " rows exceeds the grid");
}

}  // namespace

template <typename T>
double cross_entropy_forward(T* lse, const T* logits, const int32_t* targets, int64_t N, int64_t V,
                             cudaStream_t stream) {
  if (N == 0) return 0.0;
  check_rows(N, "cross_entropy_forward");
  // One double of scratch from the caching allocator (a cache hit after the
  // first step).
  Scratch scratch(sizeof(double), stream);
  double* total = static_cast<double*>(scratch.get());
  MS_CUDA_CALL(cudaMemsetAsync(total, 0, sizeof(double), stream));
  cross_entropy_forward_kernel<<<unsigned(N), kThreads, 0, stream>>>(lse, total, logits, targets,
                                                                     V);
  MS_CUDA_KERNEL_CHECK("cross_entropy_forward");
  double host = 0;
  MS_CUDA_CALL(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, stream));
  MS_CUDA_CALL(cudaStreamSynchronize(stream));
  return host / double(N);
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            double dloss, int64_t N, int64_t V, cudaStream_t stream) {
  if (N == 0) return;
  check_rows(N, "cross_entropy_backward");
  const T scale = T(dloss / double(N));
  cross_entropy_backward_kernel<<<unsigned(N), kThreads, 0, stream>>>(dlogits, logits, lse, targets,
                                                                      scale, V);
  MS_CUDA_KERNEL_CHECK("cross_entropy_backward");
}

template <typename T>
void fused_classifier(T* logits_to_dlogits, T* losses, const int32_t* targets, double dloss,
                      int64_t N, int64_t V, cudaStream_t stream) {
  if (N == 0) return;
  check_rows(N, "fused_classifier");
  const T scale = T(dloss / double(N));
  fused_classifier_kernel<<<unsigned(N), kThreads, 0, stream>>>(logits_to_dlogits, losses, targets,
                                                                scale, V);
  MS_CUDA_KERNEL_CHECK("fused_classifier");
}

#define MS_INSTANTIATE(T)                                                                          \
  template double cross_entropy_forward<T>(T*, const T*, const int32_t*, int64_t, int64_t,         \
                                           cudaStream_t);                                          \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, double, int64_t, \
                                          int64_t, cudaStream_t);                                  \
  template void fused_classifier<T>(T*, T*, const int32_t*, double, int64_t, int64_t, cudaStream_t);
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
#undef MS_INSTANTIATE

}  // namespace ms::cuda
