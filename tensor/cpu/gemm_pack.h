// Private to tensor/cpu/gemm*.cpp: packing, the copy of op(A) and op(B)
// pieces into the contiguous slivers the micro-kernels read (gemm.cpp's header
// comment, point 2), and the prefetch for an op(A) read in place instead.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tensor/cpu/gemm_kernels.h"

#ifdef MS_GEMM_X86
#include <xmmintrin.h>  // SSE (baseline x86-64) for the packing transposes
#endif

namespace ms::cpu::gemm_detail {

// ---- packing ---------------------------------------------------------------
// op(X)[i][j] of a row-major X with leading dimension ld is X[i*ld + j], or
// X[j*ld + i] when transposed; packing is the only place that cares.

// The gather half of packing: dst[k*W + c] = src[c][k] for c < n (rows of the
// source, each contiguous along k), zero for n <= c < W. Done as 4 x 4 SSE
// transposes over chunks of 16 k, so the 2 KiB being read and the 2 KiB being
// written both stay in L1; about 4x faster than element-by-element copies.
template <int W>
void gather_transpose(const float* const* src, int n, int64_t kc, float* dst) {
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int64_t k1 = std::min<int64_t>(kc, k0 + 16);
    int c = 0;
#ifdef MS_GEMM_X86
    if (k1 - k0 == 16)
      for (; c + 4 <= n; c += 4)
        for (int64_t k = k0; k < k1; k += 4) {
          __m128 r0 = _mm_loadu_ps(src[c] + k), r1 = _mm_loadu_ps(src[c + 1] + k);
          __m128 r2 = _mm_loadu_ps(src[c + 2] + k), r3 = _mm_loadu_ps(src[c + 3] + k);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          _mm_storeu_ps(dst + (k + 0) * W + c, r0);
          _mm_storeu_ps(dst + (k + 1) * W + c, r1);
          _mm_storeu_ps(dst + (k + 2) * W + c, r2);
          _mm_storeu_ps(dst + (k + 3) * W + c, r3);
        }
#endif
    for (; c < n; ++c)
      for (int64_t k = k0; k < k1; ++k) dst[k * W + c] = src[c][k];
    // Padding columns row by row: one contiguous run per k, not one store per
    // (k, c) with a W-float stride (that loop was ~20% of packing in
    // attention's 48-key GEMMs, whose last NR sliver is half padding).
    if (n < W)
      for (int64_t k = k0; k < k1; ++k) std::fill(dst + k * W + n, dst + (k + 1) * W, 0.0f);
  }
}

// Ap (ceil(mc/MR) slivers, each kc x MR) <- op(A)[i0:i0+mc, p0:p0+kc]
// The untransposed side of packing: op(X) row k (k < kc) is src + k*ld,
// n contiguous floats, dealt in W-wide pieces to the slivers (sliver s, the
// columns [s*W, s*W + W), starts at dst + s*W*kc), zero-padded to whole W.
// Each source row is read once, front to back. Walking sliver by sliver
// instead read W floats from each of kc rows ld apart, then came back for
// the next W: a fresh cache line per k that the prefetchers did not follow
// (these loads were ~45% of gemm_region's samples in a training step).
template <int W>
void deal_rows(const float* src, int64_t ld, int64_t n, int64_t kc, float* dst) {
  const int64_t full = n / W * W;
  for (int64_t k = 0; k < kc; ++k, src += ld, dst += W) {
    for (int64_t j = 0; j < full; j += W) std::memcpy(dst + j * kc, src + j, W * sizeof(float));
    if (full < n)
      for (int c = 0; c < W; ++c) dst[full * kc + c] = full + c < n ? src[full + c] : 0.0f;
  }
}

template <int MR>
void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            float* Ap) {
  if (ta)  // op(A) column k is row k of A: contiguous along M
    return deal_rows<MR>(A + p0 * lda + i0, lda, mc, kc, Ap);
  for (int64_t i = 0; i < mc; i += MR, Ap += MR * kc) {
    // gather: MR rows of A, each read sequentially along k
    const int rows = int(std::min<int64_t>(MR, mc - i));
    const float* src[MR];
    for (int r = 0; r < MR; ++r) src[r] = A + (i0 + i + std::min(r, rows - 1)) * lda + p0;
    gather_transpose<MR>(src, rows, kc, Ap);
  }
}

// Bp (ceil(nc/NR) slivers, each kc x NR) <- op(B)[p0:p0+kc, j0:j0+nc]
template <int NR>
void pack_b(bool tb, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            float* Bp) {
  if (!tb)  // op(B) row k is row k of B: contiguous along N
    return deal_rows<NR>(B + p0 * ldb + j0, ldb, nc, kc, Bp);
  for (int64_t j = 0; j < nc; j += NR, Bp += NR * kc) {
    // gather: NR rows of B, each read sequentially along k
    const int cols = int(std::min<int64_t>(NR, nc - j));
    const float* src[NR];
    for (int c = 0; c < NR; ++c) src[c] = B + (j0 + j + std::min(c, cols - 1)) * ldb + p0;
    gather_transpose<NR>(src, cols, kc, Bp);
  }
}

// Ask for rows [0, rows) x [0, n) of a row-major X, one request per cache line.
inline void prefetch_rows(const float* X, int64_t ld, int rows, int64_t n) {
  for (int r = 0; r < rows; ++r)
    for (int64_t k = 0; k < n; k += 16) __builtin_prefetch(X + r * ld + k);
}

}  // namespace ms::cpu::gemm_detail
