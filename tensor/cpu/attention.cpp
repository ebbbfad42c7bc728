#include "tensor/cpu/attention.h"

#include <cmath>
#include <limits>

#include "tensor/cpu/gemm.h"

namespace ms::cpu {

namespace {

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    gemm_f32(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  } else {
    gemm_f64(ta, tb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
  }
}

// One (b, h) per task; each GEMM is small, so it runs single-threaded inside.
// Tiny problems (lessons, tests) stay on one thread: waking a team costs more.
bool worth_threads(int64_t B, int64_t NH, int64_t Tlen, int64_t hs) {
  return B * NH > 1 && B * NH * Tlen * Tlen * hs > (1 << 16);
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                       int64_t NH) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  const bool parallel = worth_threads(B, NH, Tlen, hs);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const T* q = qkv + b * Tlen * C3 + h * hs;  // (T, hs), row stride 3C
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* a = att + (b * NH + h) * Tlen * Tlen;                            // (T, T)
      gemm<T>(false, true, Tlen, Tlen, hs, q, C3, k, C3, T(0), a, Tlen);  // q·kᵀ
      for (int64_t t = 0; t < Tlen; ++t) {
        T* row = a + t * Tlen;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t s = 0; s <= t; ++s) m = std::max(m, row[s] * scale);
        double sum = 0;
        for (int64_t s = 0; s <= t; ++s) {
          row[s] = std::exp(row[s] * scale - m);
          sum += row[s];
        }
        T inv = static_cast<T>(1.0 / sum);
        for (int64_t s = 0; s <= t; ++s) row[s] *= inv;
        for (int64_t s = t + 1; s < Tlen; ++s) row[s] = T(0);  // causal mask
      }
      gemm<T>(false, false, Tlen, hs, Tlen, a, Tlen, v, C3, T(0), out + b * Tlen * C + h * hs, C);
    }
  }
}

// With P = att, S = scaled scores, O = P·V:
//   dV = Pᵀ·dO;  dP = dO·Vᵀ;  dS = P ∘ (dP − rowsum(dP ∘ P));  dQ = dS·K·scale;  dK = dSᵀ·Q·scale
template <typename T>
void attention_backward(T* dqkv, T* datt, const T* dout, const T* qkv, const T* att, int64_t B,
                        int64_t Tlen, int64_t C, int64_t NH) {
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
      const T* dO = dout + b * Tlen * C + h * hs;                          // (T, hs), row stride C
      gemm<T>(true, false, Tlen, hs, Tlen, p, Tlen, dO, C, T(0), dv, C3);  // Pᵀ·dO
      gemm<T>(false, true, Tlen, Tlen, hs, dO, C, v, C3, T(0), dp, Tlen);  // dO·Vᵀ
      for (int64_t t = 0; t < Tlen; ++t) {
        const T* prow = p + t * Tlen;
        T* drow = dp + t * Tlen;
        double dot = 0;
        for (int64_t s = 0; s <= t; ++s) dot += static_cast<double>(drow[s]) * prow[s];
        for (int64_t s = 0; s <= t; ++s)
          drow[s] = prow[s] * (drow[s] - static_cast<T>(dot)) * scale;
        for (int64_t s = t + 1; s < Tlen; ++s) drow[s] = T(0);
      }
      gemm<T>(false, false, Tlen, hs, Tlen, dp, Tlen, k, C3, T(0), dq, C3);  // dS·K
      gemm<T>(true, false, Tlen, hs, Tlen, dp, Tlen, q, C3, T(0), dk, C3);   // dSᵀ·Q
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, int64_t, int64_t, int64_t,
                                       int64_t);
template void attention_forward<double>(double*, double*, const double*, int64_t, int64_t, int64_t,
                                        int64_t);
template void attention_backward<float>(float*, float*, const float*, const float*, const float*,
                                        int64_t, int64_t, int64_t, int64_t);
template void attention_backward<double>(double*, double*, const double*, const double*,
                                         const double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace ms::cpu
