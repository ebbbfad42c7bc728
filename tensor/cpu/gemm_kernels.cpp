// GEMM micro-kernels (see gemm_kernels.h for the contract, gemm.cpp for the
// blocking around them). Each ISA gets its own function compiled with
// __attribute__((target(...))), so this file builds with plain -O3 and the
// binary still runs on CPUs without AVX-512/AVX2: gemm.cpp picks at run time.
#include "tensor/cpu/gemm_kernels.h"

#ifdef MS_GEMM_X86
#include <immintrin.h>
#endif

namespace ms::cpu::gemm_detail {
namespace {

// C[0:mr, 0:nr] = alpha * AB + beta * C for an MR x NR accumulator tile that was
// spilled to memory. Used for edge tiles and by the scalar kernel. beta == 0
// overwrites C without reading it (BLAS semantics: NaN in C must not leak).
void store_tile(const float* tile, int NR, float* C, int64_t ldc, int mr, int nr, float alpha,
                float beta, const float* bias) {
  for (int r = 0; r < mr; ++r)
    for (int c = 0; c < nr; ++c) {
      float v = alpha * tile[r * NR + c];
      if (beta != 0.0f) v += beta * C[r * ldc + c];
      C[r * ldc + c] = bias ? v + bias[c] : v;
    }
}

}  // namespace

// Portable fallback. Fully unrolled so acc lives in (baseline SIMD) registers.
void kernel_scalar_4x16(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr,
                        int nr, float alpha, float beta, const float* bias) {
  constexpr int MR = 4, NR = 16;
  float acc[MR * NR] = {};
  for (int64_t k = 0; k < kc; ++k, Ap += MR, Bp += NR)
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < NR; ++c) acc[r * NR + c] += Ap[r] * Bp[c];
  store_tile(acc, NR, C, ldc, mr, nr, alpha, beta, bias);
}

#ifdef MS_GEMM_X86
namespace {

// Where the micro-kernel reads op(A)[r][k] of its MR x kc sliver. Both readers
// feed the same FMAs in the same order, so the two paths give the same bits.
//   PackedA: the packed sliver Ap, k-major (MR values per k).
//   RowsA:   in place, MR rows of a row-major A lda apart, each contiguous
//            along k (gemm.cpp's read_a_in_place says when). Rows are addressed
//            as base[r / 3] + (r % 3)·lda, so each broadcast is one
//            base + index·scale load and the k loop bumps MR / 3 pointers.
template <int MR>
struct PackedA {
  const float* p;
  const float* at(int r) const { return p + r; }
  void next() { p += MR; }
};
template <int MR>
struct RowsA {
  static_assert(MR % 3 == 0, "rows are addressed in threes");
  const float* base[MR / 3];
  int64_t lda;
  RowsA(const float* A, int64_t ld) : lda(ld) {
    for (int g = 0; g < MR / 3; ++g) base[g] = A + 3 * g * ld;
  }
  const float* at(int r) const { return base[r / 3] + (r % 3) * lda; }
  void next() {
    for (auto& b : base) ++b;
  }
};

// AVX2: 16 ymm registers -> 6 x 16 tile = 12 accumulators + 2 B vectors + 1
// broadcast (the classic Haswell shape).
template <class AReader>
__attribute__((target("avx2,fma"), always_inline)) inline void avx2_6x16(
    int64_t kc, AReader a_src, const float* Bp, float* C, int64_t ldc, int mr, int nr, float alpha,
    float beta, const float* bias) {
  constexpr int MR = 6, NR = 16;
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a_src.next(), Bp += NR) {
    __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m256 a = _mm256_broadcast_ss(a_src.at(r));
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  // Every loop over acc is fully unrolled: an acc[r][v] with a run-time index
  // would make GCC keep acc in memory, storing it on every k step (2x slower).
  if (mr == MR && nr == NR) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    __m256 bias_v[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    if (bias) bias_v[0] = _mm256_loadu_ps(bias), bias_v[1] = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v) {
        float* c = C + r * ldc + 8 * v;
        __m256 x = _mm256_fmadd_ps(va, acc[r][v], bias_v[v]);
        if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), x);
        _mm256_storeu_ps(c, x);
      }
  } else {
    alignas(32) float tile[MR * NR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v) _mm256_store_ps(tile + r * NR + 8 * v, acc[r][v]);
    store_tile(tile, NR, C, ldc, mr, nr, alpha, beta, bias);
  }
}

// AVX-512: 32 zmm registers -> 12 x 32 tile = 24 accumulators + 2 B vectors +
// broadcasts. Per k: 2 vector loads + 12 broadcasts feed 24 FMAs, so the two
// 512-bit FMA pipes, not the load ports, are the bottleneck. Edge tiles use
// lane masks, so no spill is needed.
template <class AReader>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"), always_inline)) inline void
avx512_12x32(int64_t kc, AReader a_src, const float* Bp, float* C, int64_t ldc, int mr, int nr,
             float alpha, float beta, const float* bias) {
  constexpr int MR = 12, NR = 32;
  __m512 acc[MR][2];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    // C is touched only after the k loop: start fetching it now so the
    // store does not wait on memory (measured ~+2% at 1024^3).
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 16), _MM_HINT_T0);
  }
  // Note: 24 accumulators + 2 B vectors + broadcasts use 27 of the 32 zmm
  // registers; if an edit makes GCC spill (vfmadd231ps reading from (%rsp) in
  // `g++ -S`), speed halves. Checked at -O2/-O3 with GCC 12.
  for (int64_t k = 0; k < kc; ++k, a_src.next(), Bp += NR) {
    // Bp streams from L2; ask for the sliver row 8 steps ahead.
    _mm_prefetch(reinterpret_cast<const char*>(Bp + 8 * NR), _MM_HINT_T0);
    __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      __m512 a = _mm512_set1_ps(*a_src.at(r));
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  // Lane masks for the (possibly partial) two 16-wide column groups.
  auto lanes = [](int n) -> __mmask16 {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
  };
  const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r >= mr) break;
    float* c = C + r * ldc;
    __m512 x0 = _mm512_fmadd_ps(va, acc[r][0], bias0), x1 = _mm512_fmadd_ps(va, acc[r][1], bias1);
    if (beta != 0.0f) {
      x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), x0);
      x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), x1);
    }
    _mm512_mask_storeu_ps(c, m0, x0);
    _mm512_mask_storeu_ps(c + 16, m1, x1);
  }
}

}  // namespace

__attribute__((target("avx2,fma"))) void kernel_avx2_6x16(int64_t kc, const float* Ap,
                                                          const float* Bp, float* C, int64_t ldc,
                                                          int mr, int nr, float alpha, float beta,
                                                          const float* bias) {
  avx2_6x16(kc, PackedA<6>{Ap}, Bp, C, ldc, mr, nr, alpha, beta, bias);
}
__attribute__((target("avx2,fma"))) void kernel_avx2_6x16_rows(int64_t kc, const float* A,
                                                               int64_t lda, const float* Bp,
                                                               float* C, int64_t ldc, int mr,
                                                               int nr, float alpha, float beta,
                                                               const float* bias) {
  avx2_6x16(kc, RowsA<6>(A, lda), Bp, C, ldc, mr, nr, alpha, beta, bias);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) void kernel_avx512_12x32(
    int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr, int nr,
    float alpha, float beta, const float* bias) {
  avx512_12x32(kc, PackedA<12>{Ap}, Bp, C, ldc, mr, nr, alpha, beta, bias);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) void kernel_avx512_12x32_rows(
    int64_t kc, const float* A, int64_t lda, const float* Bp, float* C, int64_t ldc, int mr,
    int nr, float alpha, float beta, const float* bias) {
  avx512_12x32(kc, RowsA<12>(A, lda), Bp, C, ldc, mr, nr, alpha, beta, bias);
}
#endif  // MS_GEMM_X86

}  // namespace ms::cpu::gemm_detail
