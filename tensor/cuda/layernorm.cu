#include "tensor/cuda/kernel_util.cuh"
#include "tensor/cuda/layernorm.h"

namespace ms::cuda {

namespace {

// One warp per row (llm.c's layernorm_forward_kernel3): a GPT-2 row (C = 768)
// is 24 floats per lane, so the row's statistics need only shuffles, no shared
// memory and no __syncthreads. The row is read three times (sum, centred sum of
// squares, output); the second and third reads hit L1/L2, so the kernel moves
// ~ 2·N·C·4 bytes of DRAM traffic: memory-bound, which is why fusing the
// statistics and the affine map into one kernel is the whole optimization.
constexpr int kWarpsPerBlock = 8;

template <typename T>
__global__ void layernorm_forward_kernel(T* out, T* mean, T* rstd, const T* inp, const T* weight,
                                         const T* bias, int64_t N, int64_t C, double eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= N) return;  // whole warps leave together, so shuffles stay full
  const T* x = inp + row * C;
  T* y = out + row * C;
  T sum = 0;
  for (int64_t c = lane; c < C; c += 32) sum += x[c];
  const T m = detail::warp_sum(sum) / T(C);
  T var = 0;  // two passes, as the CPU twin: E[(x-m)²] does not cancel like E[x²]-m²
  for (int64_t c = lane; c < C; c += 32) var += (x[c] - m) * (x[c] - m);
  var = detail::warp_sum(var) / T(C);
  const T s = T(1.0 / sqrt(double(var) + eps));
  for (int64_t c = lane; c < C; c += 32) y[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dinp = rstd · (dxhat - mean(dxhat) - xhat · mean(dxhat·xhat)),  dxhat = dout·weight.
// One warp per row again; dweight/dbias are a separate column reduction below.
template <typename T>
__global__ void layernorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp,
                                               const T* weight, const T* mean, const T* rstd,
                                               int64_t N, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const T* x = inp + row * C;
  const T* dy = dout + row * C;
  const T mu = mean[row], rs = rstd[row];
  T s1 = 0, s2 = 0;
  for (int64_t c = lane; c < C; c += 32) {
    const T dxhat = dy[c] * weight[c];
    s1 += dxhat;
    s2 += dxhat * (x[c] - mu) * rs;
  }
  const T m1 = detail::warp_sum(s1) / T(C), m2 = detail::warp_sum(s2) / T(C);
  for (int64_t c = lane; c < C; c += 32)
    dinp[row * C + c] = rs * (dy[c] * weight[c] - m1 - (x[c] - mu) * rs * m2);
}

// dweight[c] += Σ_n dout[n,c]·xhat[n,c], dbias[c] += Σ_n dout[n,c]: column sums.
// Block = 32 columns × 8 row-lanes; consecutive threadIdx.x read consecutive
// columns (coalesced). grid.y splits the N rows into chunks so that even
// C = 768 (24 column blocks) fills the GPU; each chunk's partial goes in with
// one atomicAdd per column, so only N/kRowsPerChunk atomics meet per address
// (the alternative, one atomic per element, serializes N of them).
constexpr int kCols = 32, kRowLanes = 8, kRowsPerChunk = 256;

template <typename T>
__global__ void layernorm_backward_params_kernel(T* dweight, T* dbias, const T* dout, const T* inp,
                                                 const T* mean, const T* rstd, int64_t N,
                                                 int64_t C) {
  __shared__ T sw[kRowLanes][kCols], sb[kRowLanes][kCols];
  const int64_t c = int64_t(blockIdx.x) * kCols + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerChunk;
  const int64_t r1 = min(N, r0 + kRowsPerChunk);
  T dw = 0, db = 0;
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const T dy = dout[r * C + c];
      dw += dy * (inp[r * C + c] - mean[r]) * rstd[r];
      db += dy;
    }
  }
  sw[threadIdx.y][threadIdx.x] = dw;
  sb[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < kRowLanes; ++k) {
      dw += sw[k][threadIdx.x];
      db += sb[k][threadIdx.x];
    }
    atomicAdd(&dweight[c], dw);
    atomicAdd(&dbias[c], db);
  }
}

}  // namespace

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const unsigned blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  layernorm_forward_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(out, mean, rstd, inp, weight,
                                                                       bias, N, C, eps);
  MS_CUDA_KERNEL_CHECK("layernorm_forward");
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int64_t N, int64_t C, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const unsigned blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  layernorm_backward_dinp_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  MS_CUDA_KERNEL_CHECK("layernorm_backward (dinp)");
  const dim3 grid(unsigned((C + kCols - 1) / kCols),
                  unsigned((N + kRowsPerChunk - 1) / kRowsPerChunk));
  MS_CHECK(grid.y <= 65535, "layernorm_backward: N = ", N, " rows exceeds the grid (at most ",
           65535LL * kRowsPerChunk, ")");
  layernorm_backward_params_kernel<<<grid, dim3(kCols, kRowLanes), 0, stream>>>(
      dweight, dbias, dout, inp, mean, rstd, N, C);
  MS_CUDA_KERNEL_CHECK("layernorm_backward (dweight, dbias)");
}

#define MS_INSTANTIATE(T)                                                                        \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     double, cudaStream_t);                                      \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      const T*, int64_t, int64_t, cudaStream_t);
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
#undef MS_INSTANTIATE

}  // namespace ms::cuda
