// The hand-written GEMM: shared-memory tiles + register blocking, the kernel
// lesson 13 walks through. C (M, N) = alpha·op(A)·op(B) + beta·C (+ bias),
// row-major. Why each level of the hierarchy is there:
//
//  * A naive kernel (one thread per C element, reading its row of A and column
//    of B from global memory) does 2 flops per 8 bytes loaded: at ~4.8 TB/s
//    that caps an H200 at ~1.2 TFLOP/s, far under its ~60 TFLOP/s of f32 FMA.
//  * Block tiling: a block computes a BM×BN tile of C. It walks K in steps of
//    BK, staging a BM×BK slice of A and a BK×BN slice of B in shared memory;
//    every staged element is then used BN (resp. BM) times from shared memory
//    instead of being reloaded from DRAM.
//  * Register blocking: each thread owns a TM×TN patch of the tile and keeps
//    its accumulators in registers. Per k it loads TM values of A and TN of B
//    from shared memory and does TM·TN FMAs: 64 FMAs per 16 shared loads here,
//    so shared-memory bandwidth stops being the limit too.
//
// What cuBLAS does that this kernel does not: tensor cores (TF32/bf16 MMA
// instructions, 8-16× the FMA rate), asynchronous copies (cp.async / TMA on
// Hopper) double-buffering the next K slice while computing this one,
// swizzled shared layouts with no bank conflicts, warp-level tiling tuned per
// shape, split-K for skinny problems — and a heuristic that picks among
// hundreds of such kernels per shape. The bench prints this kernel's fraction.
#include "tensor/cuda/gemm.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda::detail {

namespace {

constexpr int BM = 128, BN = 128, BK = 16;       // C tile per block; K slice per step
constexpr int TM = 8, TN = 8;                    // C patch per thread
constexpr int kThreads = (BM / TM) * (BN / TN);  // 16 × 16 = 256

// op(A)(i, k) and op(B)(k, j) with the transposes folded into the indexing, so
// backward's A·Bᵀ and Aᵀ·B need no transposed copy (as the CPU twin).
template <typename T>
__device__ inline T load_a(const T* A, int64_t lda, bool ta, int64_t i, int64_t k, int64_t M,
                           int64_t K) {
  if (i >= M || k >= K) return T(0);  // zero padding: odd shapes need no special case below
  return ta ? A[k * lda + i] : A[i * lda + k];
}
template <typename T>
__device__ inline T load_b(const T* B, int64_t ldb, bool tb, int64_t k, int64_t j, int64_t K,
                           int64_t N) {
  if (k >= K || j >= N) return T(0);
  return tb ? B[j * ldb + k] : B[k * ldb + j];
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gemm_tiled_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                      int64_t lda, const T* B, int64_t ldb, T beta, const T* bias, T* C,
                      int64_t ldc) {
  // Both slices stored k-major: As[k][i] (BK, BM), Bs[k][j] (BK, BN), so the
  // inner loop reads a contiguous run of TM (TN) values for one k.
  // As rows padded by 4: staging A (M, K) puts 16 consecutive threads on 16
  // consecutive k of one i, i.e. 16 addresses BM apart: without the pad all in
  // one shared-memory bank (a 16-way conflict), with it spread over 8 banks.
  __shared__ T As[BK][BM + 4];
  __shared__ T Bs[BK][BN];

  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN);  // this thread's column patch: tile columns [tx·TN, tx·TN + TN)
  const int ty = tid / (BN / TN);  // its row patch
  const int64_t row0 = int64_t(blockIdx.y) * BM;  // the block's C tile origin
  const int64_t col0 = int64_t(blockIdx.x) * BN;

  T acc[TM][TN] = {};  // (TM, TN) accumulators, in registers (fully unrolled indexing)

  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    // Stage the slices: BM·BK = 2048 elements of A, 8 per thread. Consecutive
    // threads take consecutive addresses in memory (coalesced): along k when A
    // is stored (M, K), along i when it is stored (K, M) (ta).
#pragma unroll
    for (int l = 0; l < BM * BK / kThreads; ++l) {
      const int idx = tid + l * kThreads;
      const int i = ta ? idx % BM : idx / BK;
      const int k = ta ? idx / BM : idx % BK;
      As[k][i] = load_a(A, lda, ta, row0 + i, k0 + k, M, K);
    }
#pragma unroll
    for (int l = 0; l < BK * BN / kThreads; ++l) {
      const int idx = tid + l * kThreads;
      const int j = tb ? idx / BK : idx % BN;
      const int k = tb ? idx % BK : idx / BN;
      Bs[k][j] = load_b(B, ldb, tb, k0 + k, col0 + j, K, N);
    }
    __syncthreads();  // the slices are complete before anyone reads them

#pragma unroll
    for (int k = 0; k < BK; ++k) {
      T a[TM], b[TN];  // one column of this thread's A rows, one row of its B columns
#pragma unroll
      for (int m = 0; m < TM; ++m) a[m] = As[k][ty * TM + m];  // same for 16 threads: broadcast
#pragma unroll
      for (int n = 0; n < TN; ++n) b[n] = Bs[k][tx * TN + n];
#pragma unroll
      for (int m = 0; m < TM; ++m)
#pragma unroll
        for (int n = 0; n < TN; ++n) acc[m][n] += a[m] * b[n];  // the outer product: TM·TN FMAs
    }
    __syncthreads();  // everyone is done with the slices before the next load overwrites them
  }

  // Epilogue: scale, add beta·C (not read when beta = 0, as BLAS: C may hold
  // NaN garbage) and the bias, store inside the matrix only.
#pragma unroll
  for (int m = 0; m < TM; ++m) {
    const int64_t i = row0 + ty * TM + m;
    if (i >= M) break;
#pragma unroll
    for (int n = 0; n < TN; ++n) {
      const int64_t j = col0 + tx * TN + n;
      if (j >= N) break;
      T v = alpha * acc[m][n];
      if (beta != T(0)) v += beta * C[i * ldc + j];
      if (bias != nullptr) v += bias[j];
      C[i * ldc + j] = v;
    }
  }
}

}  // namespace

template <typename T>
void gemm_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, const T* bias, T* C, int64_t ldc,
                cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  const int64_t gx = (N + BN - 1) / BN, gy = (M + BM - 1) / BM;
  MS_CHECK(gy <= 65535, "gemm (tiled): M = ", M, " needs ", gy, " row blocks; at most 65535");
  gemm_tiled_kernel<T><<<dim3(unsigned(gx), unsigned(gy)), kThreads, 0, stream>>>(
      trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc);
  MS_CUDA_KERNEL_CHECK("gemm (tiled)");
}

template void gemm_tiled<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                const float*, int64_t, float, const float*, float*, int64_t,
                                cudaStream_t);
template void gemm_tiled<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                 int64_t, const double*, int64_t, double, const double*, double*,
                                 int64_t, cudaStream_t);

}  // namespace ms::cuda::detail
