#include "tensor/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/cpu/gemm.h"
#include "tensor/cpu/vec_math.h"

namespace ms::cpu {
namespace {

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc, T alpha = T(1)) {
  if constexpr (std::is_same_v<T, float>) {
    gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    gemm_f64(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template <typename T>
inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return fast_expf(x);
  } else {
    return std::exp(x);
  }
}

// Causal softmax of one row of scaled scores in place: row[0..len) becomes
// softmax, row[len..Tlen) zero (the mask). exp and the sum run as separate
// loops: GCC vectorizes neither when they are fused.
template <typename T>
[[gnu::always_inline]] inline void softmax_row(T* row, int64_t len, int64_t Tlen) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t s = 0; s < len; ++s) m = row[s] > m ? row[s] : m;
#pragma omp simd
  for (int64_t s = 0; s < len; ++s) row[s] = exp_of(row[s] - m);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t s = 0; s < len; ++s) sum += row[s];
  const T inv = T(1) / sum;
#pragma omp simd
  for (int64_t s = 0; s < len; ++s) row[s] *= inv;
  for (int64_t s = len; s < Tlen; ++s) row[s] = T(0);
}

// dS row = P ∘ (dP − Σ dP∘P) · scale over row[0..len), zero beyond.
template <typename T>
[[gnu::always_inline]] inline void softmax_backward_row(T* drow, const T* prow, int64_t len,
                                                        int64_t Tlen, T scale) {
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t s = 0; s < len; ++s) dot += drow[s] * prow[s];
#pragma omp simd
  for (int64_t s = 0; s < len; ++s) drow[s] = prow[s] * (drow[s] - dot) * scale;
  for (int64_t s = len; s < Tlen; ++s) drow[s] = T(0);
}

// Rows [t0, t1) of a (T, T) block; the f32 loops are built per ISA (vec_math.h).
MS_VECTOR_CLONES
void softmax_rows_f32(float* a, int64_t t0, int64_t t1, int64_t Tlen) {
  for (int64_t t = t0; t < t1; ++t) softmax_row<float>(a + t * Tlen, t + 1, Tlen);
}
MS_VECTOR_CLONES
void softmax_backward_rows_f32(float* dp, const float* p, int64_t t0, int64_t t1, int64_t Tlen,
                               float scale) {
  for (int64_t t = t0; t < t1; ++t)
    softmax_backward_row<float>(dp + t * Tlen, p + t * Tlen, t + 1, Tlen, scale);
}

template <typename T>
void softmax_rows(T* a, int64_t t0, int64_t t1, int64_t Tlen) {
  if constexpr (std::is_same_v<T, float>) {
    softmax_rows_f32(a, t0, t1, Tlen);
  } else {
    for (int64_t t = t0; t < t1; ++t) softmax_row<T>(a + t * Tlen, t + 1, Tlen);
  }
}
template <typename T>
void softmax_backward_rows(T* dp, const T* p, int64_t t0, int64_t t1, int64_t Tlen, T scale) {
  if constexpr (std::is_same_v<T, float>) {
    softmax_backward_rows_f32(dp, p, t0, t1, Tlen, scale);
  } else {
    for (int64_t t = t0; t < t1; ++t)
      softmax_backward_row<T>(dp + t * Tlen, p + t * Tlen, t + 1, Tlen, scale);
  }
}

// Causal blocking: row block [i0, i0 + kRows) of the scores attends to keys
// [0, i0 + kRows) only, so each GEMM skips the blocks above the diagonal that
// the mask would zero: at T = 128, 67% of the full T×T work. Smaller blocks
// skip more but each small GEMM pays its packing and call again; 48 (four
// AVX-512 micro-kernel heights) measured best of 24/48/64 here, ~12% off
// attention's time at T = 128 (noisy, shared machine).
constexpr int64_t kRows = 48;

// One (b, h) per task; each GEMM is small, so it runs single-threaded inside.
// Tiny problems (lessons, tests) stay on one thread: waking a team costs more.
bool worth_threads(int64_t B, int64_t NH, int64_t Tlen, int64_t hs) {
  return B * NH > 1 && B * NH * Tlen * Tlen * hs > (1 << 16);
}

// dst[0..n) = p ∘ keep · scale (the dropped probabilities).
template <typename T>
inline void drop_row(T* dst, const T* p, const uint8_t* keep, int64_t n, T scale) {
  for (int64_t s = 0; s < n; ++s) dst[s] = keep[s] ? p[s] * scale : T(0);
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                       int64_t NH, const uint8_t* keep, T keep_scale) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  const bool parallel = worth_threads(B, NH, Tlen, hs);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      // One row block of dropped probabilities (with dropout only).
      std::vector<T> dropped(keep ? size_t(std::min(Tlen, kRows) * Tlen) : 0);
      const uint8_t* kp = keep ? keep + (b * NH + h) * Tlen * Tlen : nullptr;
      const T* q = qkv + b * Tlen * C3 + h * hs;  // (T, hs), row stride 3C
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* a = att + (b * NH + h) * Tlen * Tlen;  // (T, T)
      T* o = out + b * Tlen * C + h * hs;       // (T, hs), row stride C
      for (int64_t i0 = 0; i0 < Tlen; i0 += kRows) {
        const int64_t i1 = std::min(Tlen, i0 + kRows);
        T* ai = a + i0 * Tlen;
        gemm<T>(false, true, i1 - i0, i1, hs, q + i0 * C3, C3, k, C3, T(0), ai, Tlen,
                scale);                    // q·kᵀ/√hs, keys [0, i1)
        softmax_rows<T>(a, i0, i1, Tlen);  // zero-fills the masked rest of each row
        const T* pv = ai;
        if (kp) {  // attention dropout: P ∘ keep / (1-p), this block only
          for (int64_t i = i0; i < i1; ++i)
            drop_row<T>(dropped.data() + (i - i0) * Tlen, a + i * Tlen, kp + i * Tlen, i1,
                        keep_scale);
          pv = dropped.data();
        }
        gemm<T>(false, false, i1 - i0, hs, i1, pv, Tlen, v, C3, T(0), o + i0 * C, C);  // ·v
      }
    }
  }
}

// With P = att, S = scaled scores, O = P·V:
//   dV = Pᵀ·dO;  dP = dO·Vᵀ;  dS = P ∘ (dP − rowsum(dP ∘ P));  dQ = dS·K·scale;  dK = dSᵀ·Q·scale
// With dropout, O = D·V where D = P ∘ keep·r (r = 1/(1-p)): dV = Dᵀ·dO, and
// dP = (dO·Vᵀ) ∘ keep·r before softmax's backward. D is rebuilt from P and
// the mask into the scratch rows first, used for dV, then overwritten by dP.
template <typename T>
void attention_backward(T* dqkv, T* datt, const T* dout, const T* qkv, const T* att, int64_t B,
                        int64_t Tlen, int64_t C, int64_t NH, const uint8_t* keep, T keep_scale) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  const bool parallel = worth_threads(B, NH, Tlen, hs);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const T* q = qkv + b * Tlen * C3 + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* dq = dqkv + b * Tlen * C3 + h * hs;
      T* dk = dq + C;
      T* dv = dq + 2 * C;
      const T* p = att + (b * NH + h) * Tlen * Tlen;
      T* dp = datt + (b * NH + h) * Tlen * Tlen;
      const T* dO = dout + b * Tlen * C + h * hs;  // (T, hs), row stride C
      const uint8_t* kp = keep ? keep + (b * NH + h) * Tlen * Tlen : nullptr;
      if (kp) {  // dV = Dᵀ·dO from the rebuilt dropped probabilities D
        for (int64_t i = 0; i < Tlen; ++i) {
          drop_row<T>(dp + i * Tlen, p + i * Tlen, kp + i * Tlen, i + 1, keep_scale);
          for (int64_t s = i + 1; s < Tlen; ++s) dp[i * Tlen + s] = T(0);
        }
        for (int64_t j0 = 0; j0 < Tlen; j0 += kRows) {
          const int64_t j1 = std::min(Tlen, j0 + kRows);
          gemm<T>(true, false, j1 - j0, hs, Tlen - j0, dp + j0 * Tlen + j0, Tlen, dO + j0 * C, C,
                  T(0), dv + j0 * C3, C3);  // Dᵀ·dO
        }
      }
      // Row blocks of dP = dO·Vᵀ, dS, dQ = dS·K: columns [0, i1) only.
      for (int64_t i0 = 0; i0 < Tlen; i0 += kRows) {
        const int64_t i1 = std::min(Tlen, i0 + kRows);
        gemm<T>(false, true, i1 - i0, i1, hs, dO + i0 * C, C, v, C3, T(0), dp + i0 * Tlen,
                Tlen);  // dO·Vᵀ
        if (kp)         // through the dropout: ∘ keep / (1-p)
          for (int64_t i = i0; i < i1; ++i)
            drop_row<T>(dp + i * Tlen, dp + i * Tlen, kp + i * Tlen, i + 1, keep_scale);
        softmax_backward_rows<T>(dp, p, i0, i1, Tlen, scale);  // dS (scaled), zero past t
        gemm<T>(false, false, i1 - i0, hs, i1, dp + i0 * Tlen, Tlen, k, C3, T(0), dq + i0 * C3,
                C3);  // dS·K
      }
      // Column blocks of dV = Pᵀ·dO and dK = dSᵀ·Q: P and dS are zero above
      // the diagonal, so key block [j0, j1) sums over queries [j0, T) only.
      for (int64_t j0 = 0; j0 < Tlen; j0 += kRows) {
        const int64_t j1 = std::min(Tlen, j0 + kRows);
        if (!kp)
          gemm<T>(true, false, j1 - j0, hs, Tlen - j0, p + j0 * Tlen + j0, Tlen, dO + j0 * C, C,
                  T(0), dv + j0 * C3, C3);  // Pᵀ·dO
        gemm<T>(true, false, j1 - j0, hs, Tlen - j0, dp + j0 * Tlen + j0, Tlen, q + j0 * C3, C3,
                T(0), dk + j0 * C3, C3);  // dSᵀ·Q
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, int64_t, int64_t, int64_t,
                                       int64_t, const uint8_t*, float);
template void attention_forward<double>(double*, double*, const double*, int64_t, int64_t, int64_t,
                                        int64_t, const uint8_t*, double);
template void attention_backward<float>(float*, float*, const float*, const float*, const float*,
                                        int64_t, int64_t, int64_t, int64_t, const uint8_t*, float);
template void attention_backward<double>(double*, double*, const double*, const double*,
                                         const double*, int64_t, int64_t, int64_t, int64_t,
                                         const uint8_t*, double);

}  // namespace ms::cpu
