// Helpers shared by the kernel families in tensor/cuda/*.cu (device code only;
// the allocator and stream live with the runtime, not here).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cuda/std/limits>

#include "tensor/error.h"

// Every launch is checked at once: an asynchronous kernel fault would otherwise
// surface in some unrelated later call. cudaGetLastError catches bad launch
// configurations (grid too large, too much shared memory) without a sync.
#define MS_CUDA_KERNEL_CHECK(what)                                                             \
  do {                                                                                         \
    cudaError_t ms_err_ = cudaGetLastError();                                                  \
    MS_CHECK(ms_err_ == cudaSuccess, "CUDA kernel ", what, ": ", cudaGetErrorString(ms_err_)); \
  } while (0)

#define MS_CUDA_CALL(expr)                                                             \
  do {                                                                                 \
    cudaError_t ms_err_ = (expr);                                                      \
    MS_CHECK(ms_err_ == cudaSuccess, #expr, " failed: ", cudaGetErrorString(ms_err_)); \
  } while (0)

namespace ms::cuda::detail {

// Blocks to cover n items with `threads` each, capped so a grid-stride loop
// covers the rest (grid.x may not exceed 2^31 - 1; far fewer blocks already fill
// an H200's 132 SMs).
inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < cap ? b : cap);
}

// Sum over a warp with shuffles: every lane ends holding the total.
template <typename T>
__device__ inline T warp_sum(T v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename T>
__device__ inline T warp_max(T v) {
  for (int off = 16; off > 0; off >>= 1) {
    T o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o > v ? o : v;
  }
  return v;
}

// Sum over the whole block; `shared` holds one slot per warp (32). Every thread
// gets the total. The trailing __syncthreads lets the caller reuse `shared`.
template <typename T>
__device__ inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int nwarps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T total = lane < nwarps ? shared[lane] : T(0);
  total = warp_sum(total);
  __syncthreads();
  return total;
}

template <typename T>
__device__ inline T block_max(T v, T* shared, T lowest) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int nwarps = (blockDim.x + 31) / 32;
  v = warp_max(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T m = lane < nwarps ? shared[lane] : lowest;
  m = warp_max(m);
  __syncthreads();
  return m;
}

// Online softmax statistics (Milakov & Gimelshein 2018, the trick flash
// attention builds on): one pass keeps a running max m and a sum s of
// exp(x - m), rescaled whenever m grows, instead of a max pass and then a sum
// pass over the row.
template <typename T>
struct MaxSum {
  T m, s;
};

template <typename T>
__device__ inline MaxSum<T> combine(MaxSum<T> a, MaxSum<T> b) {
  const T m = a.m > b.m ? a.m : b.m;
  if (m == -::cuda::std::numeric_limits<T>::infinity()) return {m, T(0)};
  return {m, a.s * exp(a.m - m) + b.s * exp(b.m - m)};
}

template <typename T>
__device__ inline MaxSum<T> warp_combine(MaxSum<T> acc) {
  for (int off = 16; off > 0; off >>= 1)
    acc = combine(acc, MaxSum<T>{__shfl_xor_sync(0xffffffffu, acc.m, off),
                                 __shfl_xor_sync(0xffffffffu, acc.s, off)});
  return acc;
}

// Block-wide (max, Σ exp(x - max)) of one row of n elements, in every thread:
// each thread folds its strided elements, then the warps and the block
// combine the pairs. blockDim.x must be a multiple of 32. The trailing
// __syncthreads lets the caller run it again (its shared slots are reused).
template <typename T>
__device__ MaxSum<T> block_row_max_sum(const T* x, int64_t n) {
  __shared__ T sm[32], ss[32];
  const T ninf = -::cuda::std::numeric_limits<T>::infinity();
  MaxSum<T> acc{ninf, T(0)};
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = combine(acc, MaxSum<T>{x[i], T(1)});
  acc = warp_combine(acc);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  if (lane == 0) {
    sm[warp] = acc.m;
    ss[warp] = acc.s;
  }
  __syncthreads();
  acc = lane < nwarps ? MaxSum<T>{sm[lane], ss[lane]} : MaxSum<T>{ninf, T(0)};
  acc = warp_combine(acc);
  __syncthreads();
  return acc;
}

}  // namespace ms::cuda::detail
