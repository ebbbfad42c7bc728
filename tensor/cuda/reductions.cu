#include "tensor/cuda/allocator.h"
#include "tensor/cuda/kernel_util.cuh"
#include "tensor/cuda/reductions.h"

namespace ms::cuda {

namespace {

// Two shapes of the same reduction:
//  inner == 1 (a row sum: a loss over tokens): one block per output, the block
//    strides along the contiguous row and combines with shuffles.
//  inner > 1 (a bias gradient, outer = 1, R = B·T, inner = C): a block of
//    32 columns × 32 row-lanes; threadIdx.x walks consecutive columns, so each
//    warp reads 128 contiguous bytes per row, and the 32 row-lanes' partials
//    meet in shared memory. No atomics: the result is deterministic.
constexpr int kRowThreads = 256;
constexpr int kCols = 32, kLanes = 32;

template <typename T>
__global__ void sum_rows_kernel(const T* in, T* out, int64_t R) {
  __shared__ double shared[32];
  const T* row = in + blockIdx.x * R;
  double acc = 0;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) acc += double(row[r]);
  acc = detail::block_sum(acc, shared);
  if (threadIdx.x == 0) out[blockIdx.x] = T(acc);
}

template <typename T>
__global__ void sum_middle_kernel(const T* in, T* out, int64_t R, int64_t inner) {
  __shared__ double part[kLanes][kCols + 1];  // +1: no bank conflicts on the column walk
  const int64_t o = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * kCols + threadIdx.x;
  double acc = 0;
  if (i < inner) {
    const T* p = in + o * R * inner + i;
    for (int64_t r = threadIdx.y; r < R; r += kLanes) acc += double(p[r * inner]);
  }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && i < inner) {
    for (int k = 1; k < kLanes; ++k) acc += part[k][threadIdx.x];
    out[o * inner + i] = T(acc);
  }
}

// One thread per output walks its R elements in order, so "first occurrence"
// and NaN propagation read exactly as the CPU loop. R is usually small here
// (argmax over a vocabulary row is the big case; it is still one pass).
template <typename T>
__global__ void max_kernel(const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R,
                           int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = k / inner, i = k % inner;
    const T* p = in + o * R * inner + i;
    T best = p[0];
    int32_t at = 0;
    for (int64_t r = 1; r < R && !isnan(best); ++r) {
      const T v = p[r * inner];
      if (v > best || isnan(v)) {
        best = v;
        at = int32_t(r);
      }
    }
    out[k] = best;
    argmax[k] = at;
  }
}

__global__ void sum_squares_kernel(const float* x, int64_t n, double* total) {
  __shared__ double shared[32];
  double acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    acc += double(x[i]) * double(x[i]);
  acc = detail::block_sum(acc, shared);
  if (threadIdx.x == 0) atomicAdd(total, acc);
}

}  // namespace

template <typename T>
void reduce_sum(const T* in, T* out, int64_t outer, int64_t R, int64_t inner, cudaStream_t stream) {
  if (outer * inner == 0) return;
  if (R == 0) {  // an empty sum is 0, as on the CPU
    MS_CUDA_CALL(cudaMemsetAsync(out, 0, sizeof(T) * outer * inner, stream));
    return;
  }
  if (inner == 1) {
    MS_CHECK(outer < (int64_t(1) << 31), "reduce_sum: outer = ", outer, " exceeds the grid");
    sum_rows_kernel<<<unsigned(outer), kRowThreads, 0, stream>>>(in, out, R);
  } else {
    MS_CHECK(outer <= 65535, "reduce_sum: outer = ", outer, " with inner = ", inner,
             " exceeds the grid (outer at most 65535 when inner > 1)");
    const dim3 grid(unsigned((inner + kCols - 1) / kCols), unsigned(outer));
    sum_middle_kernel<<<grid, dim3(kCols, kLanes), 0, stream>>>(in, out, R, inner);
  }
  MS_CUDA_KERNEL_CHECK("reduce_sum");
}

template <typename T>
void reduce_max(const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R, int64_t inner,
                cudaStream_t stream) {
  if (outer * inner == 0) return;
  MS_CHECK(R > 0, "reduce_max over an empty axis (R = 0)");
  max_kernel<<<detail::blocks_for(outer * inner, 256), 256, 0, stream>>>(in, out, argmax, outer, R,
                                                                         inner);
  MS_CUDA_KERNEL_CHECK("reduce_max");
}

double sum_squares(const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return 0.0;
  Scratch scratch(sizeof(double), stream);  // the caching allocator's
  double* total = static_cast<double*>(scratch.get());
  MS_CUDA_CALL(cudaMemsetAsync(total, 0, sizeof(double), stream));
  // 1024 blocks: each thread sums many elements privately; only 1024 atomics.
  sum_squares_kernel<<<detail::blocks_for(n, 256, 1024), 256, 0, stream>>>(x, n, total);
  MS_CUDA_KERNEL_CHECK("sum_squares");
  double host = 0;
  MS_CUDA_CALL(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, stream));
  MS_CUDA_CALL(cudaStreamSynchronize(stream));
  return host;
}

template void reduce_sum<float>(const float*, float*, int64_t, int64_t, int64_t, cudaStream_t);
template void reduce_sum<double>(const double*, double*, int64_t, int64_t, int64_t, cudaStream_t);
template void reduce_max<float>(const float*, float*, int32_t*, int64_t, int64_t, int64_t,
                                cudaStream_t);
template void reduce_max<double>(const double*, double*, int32_t*, int64_t, int64_t, int64_t,
                                 cudaStream_t);

}  // namespace ms::cuda
