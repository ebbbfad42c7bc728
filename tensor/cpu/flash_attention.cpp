// Blocked causal attention with the log-sum-exp (flash_attention.h).
#include "tensor/cpu/flash_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_kernels.h"
#include "tensor/cpu/gemm_packed.h"
#include "tensor/cpu/vec_math.h"

namespace ms::cpu {
namespace {

// Query rows per tile (two AVX-512 micro-kernel heights, four AVX2 ones) and
// keys per block. With K and V packed once per head a smaller tile costs no
// repacking, only wastes less of the causal triangle on its diagonal (at
// T = 128, 17% over the exact triangle against 33% with attention.cpp's 48
// rows): 24 measured ~6% faster than 48 at T = 64 and 128 (bench_attention,
// interleaved runs, CPU time on a loaded machine). At T ≤ 256 a tile's keys
// are one block and the online rescaling never runs.
constexpr int64_t kRows = 24;
constexpr int64_t kKeys = 256;

bool worth_threads(int64_t B, int64_t NH, int64_t Tlen, int64_t hs) {
  return B * NH > 1 && B * NH * Tlen * Tlen * hs > (1 << 16);
}

// op(B) of a head's matrix as a GEMM's right operand. f32: packed once into
// panels (gemm_packed.h) and multiplied in slices; f64 (gradient checks):
// the strided original, through gemm_f64.
template <typename T>
struct Panel;

template <>
struct Panel<float> {
  PackedGemmF32 g;
  gemm_detail::Scratch buf;
  const float* p = nullptr;
  int64_t k_total = 0;
  void pack(bool tb, const float* B, int64_t ldb, int64_t k, int64_t n) {
    float* dst = buf.get(size_t(g.packed_b_size(k, n)));
    g.pack_b(tb, B, ldb, k, n, dst);
    p = dst, k_total = k;
  }
  // C (m, n) = alpha·op(A)·op(B)[k0:k0+kc, n0:n0+n] + beta·C
  void mul(bool ta, int64_t m, int64_t n, int64_t kc, float alpha, const float* A, int64_t lda,
           int64_t k0, int64_t n0, float beta, float* C, int64_t ldc) const {
    g.multiply(ta, m, n, kc, alpha, A, lda, p, k_total, k0, n0, beta, C, ldc);
  }
};

template <>
struct Panel<double> {
  const double* p = nullptr;
  int64_t ld = 0;
  bool tb = false;
  void pack(bool t, const double* B, int64_t ldb, int64_t, int64_t) { p = B, ld = ldb, tb = t; }
  void mul(bool ta, int64_t m, int64_t n, int64_t kc, double alpha, const double* A, int64_t lda,
           int64_t k0, int64_t n0, double beta, double* C, int64_t ldc) const {
    const double* b = tb ? p + n0 * ld + k0 : p + k0 * ld + n0;
    gemm_f64(ta, tb, m, n, kc, alpha, A, lda, b, ld, beta, C, ldc);
  }
};

template <typename T>
inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>)
    return fast_expf(x);
  else
    return std::exp(x);
}

// How many keys of block [j0, j0 + kb) query i sees (keys ≤ i).
inline int64_t visible(int64_t i, int64_t j0, int64_t kb) {
  return std::clamp<int64_t>(i + 1 - j0, 0, kb);
}

// One key block of the online softmax for the tile's rows: s (rows, ld)
// holds the scaled scores of keys [j0, j0 + kb) and becomes the block's
// weights exp(s - m_new) (∘ keep·keep_scale with dropout), zero where
// masked; m, l (the running max and Σ exp) are updated and corr[r] =
// exp(m_old - m_new) is what the row's partial output must be scaled by.
template <typename T>
[[gnu::always_inline]] inline void online_block(T* s, int64_t ld, int64_t rows, int64_t i0,
                                                int64_t j0, int64_t kb, T* m, T* l, T* corr,
                                                const uint8_t* keep, int64_t Tlen, T keep_scale) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = s + r * ld;
    const int64_t n = visible(i0 + r, j0, kb);
    corr[r] = T(1);
    if (n > 0) {
      T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
      const T m_new = std::max(m[r], mx);
      corr[r] = m[r] == -std::numeric_limits<T>::infinity() ? T(0) : exp_of(m[r] - m_new);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] = exp_of(row[j] - m_new);
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) sum += row[j];
      l[r] = l[r] * corr[r] + sum;  // the normaliser is the undropped softmax's
      m[r] = m_new;
      if (keep) {
        const uint8_t* kr = keep + (i0 + r) * Tlen + j0;
        for (int64_t j = 0; j < n; ++j) row[j] = kr[j] ? row[j] * keep_scale : T(0);
      }
    }
    for (int64_t j = n; j < kb; ++j) row[j] = T(0);
  }
}

// Backward of one block: from the scaled scores s and dP = dO·vᵀ (both
// (rows, ld)), P = exp(s - lse) recomputed; s becomes the dropped P (for
// dV) and dp becomes dS = P ∘ (m∘dP − delta)·scale (for dQ and dK), with
// m = keep·keep_scale (1 without dropout); zero where masked.
template <typename T>
[[gnu::always_inline]] inline void backward_block(T* s, T* dp, int64_t ld, int64_t rows, int64_t i0,
                                                  int64_t j0, int64_t kb, const T* lse,
                                                  const T* delta, T scale, const uint8_t* keep,
                                                  int64_t Tlen, T keep_scale) {
  for (int64_t r = 0; r < rows; ++r) {
    T* pr = s + r * ld;
    T* dr = dp + r * ld;
    const int64_t n = visible(i0 + r, j0, kb);
    const T L = lse[r], dl = delta[r];
    if (keep) {
      const uint8_t* kr = keep + (i0 + r) * Tlen + j0;
      for (int64_t j = 0; j < n; ++j) {
        const T p = exp_of(pr[j] - L), mk = kr[j] ? keep_scale : T(0);
        pr[j] = p * mk;
        dr[j] = p * (mk * dr[j] - dl) * scale;
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        const T p = exp_of(pr[j] - L);
        pr[j] = p;
        dr[j] = p * (dr[j] - dl) * scale;
      }
    }
    for (int64_t j = n; j < kb; ++j) pr[j] = dr[j] = T(0);
  }
}

// The f32 loops built per ISA (vec_math.h); f64 inlines the template.
MS_VECTOR_CLONES
void online_block_f32(float* s, int64_t ld, int64_t rows, int64_t i0, int64_t j0, int64_t kb,
                      float* m, float* l, float* corr, const uint8_t* keep, int64_t Tlen,
                      float keep_scale) {
  online_block<float>(s, ld, rows, i0, j0, kb, m, l, corr, keep, Tlen, keep_scale);
}
MS_VECTOR_CLONES
void backward_block_f32(float* s, float* dp, int64_t ld, int64_t rows, int64_t i0, int64_t j0,
                        int64_t kb, const float* lse, const float* delta, float scale,
                        const uint8_t* keep, int64_t Tlen, float keep_scale) {
  backward_block<float>(s, dp, ld, rows, i0, j0, kb, lse, delta, scale, keep, Tlen, keep_scale);
}

template <typename T>
void online_block_any(T* s, int64_t ld, int64_t rows, int64_t i0, int64_t j0, int64_t kb, T* m,
                      T* l, T* corr, const uint8_t* keep, int64_t Tlen, T keep_scale) {
  if constexpr (std::is_same_v<T, float>)
    online_block_f32(s, ld, rows, i0, j0, kb, m, l, corr, keep, Tlen, keep_scale);
  else
    online_block<T>(s, ld, rows, i0, j0, kb, m, l, corr, keep, Tlen, keep_scale);
}
template <typename T>
void backward_block_any(T* s, T* dp, int64_t ld, int64_t rows, int64_t i0, int64_t j0, int64_t kb,
                        const T* lse, const T* delta, T scale, const uint8_t* keep, int64_t Tlen,
                        T keep_scale) {
  if constexpr (std::is_same_v<T, float>)
    backward_block_f32(s, dp, ld, rows, i0, j0, kb, lse, delta, scale, keep, Tlen, keep_scale);
  else
    backward_block<T>(s, dp, ld, rows, i0, j0, kb, lse, delta, scale, keep, Tlen, keep_scale);
}

// Per-thread panels (OpenMP threads are long-lived: after the first call
// nothing is allocated): K and V packed once per (b, h) task, and a query
// tile's q and dO in backward.
template <typename T>
struct Buffer {  // grow-only, uninitialised
  std::vector<T> v;
  T* get(int64_t n) {
    if (int64_t(v.size()) < n) v.resize(size_t(n));
    return v.data();
  }
};
template <typename T>
struct HeadPanels {
  Panel<T> a, b, c, d, e;
  Buffer<T> s, dp, m, l, corr, delta;  // score blocks and per-row statistics
};
template <typename T>
HeadPanels<T>& thread_panels() {
  thread_local HeadPanels<T> p;
  if constexpr (std::is_same_v<T, float>) p.a.g = p.b.g = p.c.g = p.d.g = p.e.g = packed_gemm_f32();
  return p;
}

}  // namespace

template <typename T>
void flash_attention_forward(T* out, T* lse, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                             int64_t NH, const uint8_t* keep, T keep_scale) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(B, NH, Tlen, hs))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const T* q = qkv + b * Tlen * C3 + h * hs;  // (T, hs), row stride 3C
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* o = out + b * Tlen * C + h * hs;  // (T, hs), row stride C
      T* L = lse + (b * NH + h) * Tlen;    // (T)
      const uint8_t* kp = keep ? keep + (b * NH + h) * Tlen * Tlen : nullptr;  // (T, T)
      HeadPanels<T>& pn = thread_panels<T>();
      Panel<T>& kt = pn.a;  // op(B) = kᵀ (hs, T)
      Panel<T>& vp = pn.b;  // op(B) = v (T, hs)
      kt.pack(true, k, C3, hs, Tlen);
      vp.pack(false, v, C3, Tlen, hs);
      T* s = pn.s.get(kRows * kKeys);                                            // (rows, kKeys)
      T *m = pn.m.get(kRows), *l = pn.l.get(kRows), *corr = pn.corr.get(kRows);  // (rows)
      for (int64_t i0 = 0; i0 < Tlen; i0 += kRows) {
        const int64_t i1 = std::min(Tlen, i0 + kRows), rows = i1 - i0;
        std::fill(m, m + kRows, -std::numeric_limits<T>::infinity());
        std::fill(l, l + kRows, T(0));
        for (int64_t j0 = 0; j0 < i1; j0 += kKeys) {  // keys past the tile's last row: skipped
          const int64_t kb = std::min(i1, j0 + kKeys) - j0;
          kt.mul(false, rows, kb, hs, scale, q + i0 * C3, C3, 0, j0, T(0), s,
                 kKeys);  // S = q·kᵀ/√hs (rows, kb)
          online_block_any<T>(s, kKeys, rows, i0, j0, kb, m, l, corr, kp, Tlen, keep_scale);
          if (j0 > 0)  // rescale the partial output to the new running max
            for (int64_t r = 0; r < rows; ++r)
              if (corr[r] != T(1))
                for (int64_t d = 0; d < hs; ++d) o[(i0 + r) * C + d] *= corr[r];
          vp.mul(false, rows, hs, kb, T(1), s, kKeys, j0, 0, j0 > 0 ? T(1) : T(0), o + i0 * C,
                 C);  // O += W·v (rows, hs)
        }
        for (int64_t r = 0; r < rows; ++r) {  // every row saw key 0: l > 0
          const T inv = T(1) / l[r];
          for (int64_t d = 0; d < hs; ++d) o[(i0 + r) * C + d] *= inv;
          L[i0 + r] = m[r] + std::log(l[r]);
        }
      }
    }
  }
}

// FlashAttention-2's backward per (b, h), with delta_i = Σ_d dO_id·O_id
// (= Σ_j P_ij·dP_ij, softmax's backward term, from the final output):
//   P = exp(S − lse);  dV += (P∘m)ᵀ·dO;  dS = P ∘ (m∘(dO·vᵀ) − delta)/√hs
//   dQ += dS·k;  dK += dSᵀ·q
// Tiles of query rows outside, key blocks inside (one thread owns the head,
// so dK and dV accumulate in place without atomics).
template <typename T>
void flash_attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                              int64_t B, int64_t Tlen, int64_t C, int64_t NH, const uint8_t* keep,
                              T keep_scale) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(B, NH, Tlen, hs))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const T* q = qkv + b * Tlen * C3 + h * hs;  // (T, hs), row stride 3C
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* dq = dqkv + b * Tlen * C3 + h * hs;
      T* dk = dq + C;
      T* dv = dq + 2 * C;
      const T* dO = dout + b * Tlen * C + h * hs;  // (T, hs), row stride C
      const T* o = out + b * Tlen * C + h * hs;
      const T* L = lse + (b * NH + h) * Tlen;
      const uint8_t* kp = keep ? keep + (b * NH + h) * Tlen * Tlen : nullptr;
      HeadPanels<T>& pn = thread_panels<T>();
      T* delta = pn.delta.get(Tlen);  // (T)
      for (int64_t i = 0; i < Tlen; ++i) {
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t d = 0; d < hs; ++d) acc += dO[i * C + d] * o[i * C + d];
        delta[i] = acc;
      }
      for (int64_t j = 0; j < Tlen; ++j) {
        std::fill(dk + j * C3, dk + j * C3 + hs, T(0));
        std::fill(dv + j * C3, dv + j * C3 + hs, T(0));
      }
      Panel<T>& kt = pn.a;  // op(B) = kᵀ (hs, T): scores
      Panel<T>& vt = pn.b;  // op(B) = vᵀ (hs, T): dP
      Panel<T>& kn = pn.c;  // op(B) = k (T, hs): dQ
      kt.pack(true, k, C3, hs, Tlen);
      vt.pack(true, v, C3, hs, Tlen);
      kn.pack(false, k, C3, Tlen, hs);
      Panel<T>& qb = pn.d;               // op(B) = this tile's q (rows, hs): dK
      Panel<T>& dob = pn.e;              // op(B) = this tile's dO (rows, hs): dV
      T* s = pn.s.get(kRows * kKeys);    // (rows, kKeys)
      T* dp = pn.dp.get(kRows * kKeys);  // (rows, kKeys)
      for (int64_t i0 = 0; i0 < Tlen; i0 += kRows) {
        const int64_t i1 = std::min(Tlen, i0 + kRows), rows = i1 - i0;
        qb.pack(false, q + i0 * C3, C3, rows, hs);
        dob.pack(false, dO + i0 * C, C, rows, hs);
        for (int64_t j0 = 0; j0 < i1; j0 += kKeys) {
          const int64_t kb = std::min(i1, j0 + kKeys) - j0;
          kt.mul(false, rows, kb, hs, scale, q + i0 * C3, C3, 0, j0, T(0), s,
                 kKeys);  // S = q·kᵀ/√hs
          vt.mul(false, rows, kb, hs, T(1), dO + i0 * C, C, 0, j0, T(0), dp,
                 kKeys);  // dO·vᵀ
          backward_block_any<T>(s, dp, kKeys, rows, i0, j0, kb, L + i0, delta + i0, scale, kp, Tlen,
                                keep_scale);
          dob.mul(true, kb, hs, rows, T(1), s, kKeys, 0, 0, T(1), dv + j0 * C3,
                  C3);  // dV += (P∘m)ᵀ·dO
          qb.mul(true, kb, hs, rows, T(1), dp, kKeys, 0, 0, T(1), dk + j0 * C3,
                 C3);  // dK += dSᵀ·q
          kn.mul(false, rows, hs, kb, T(1), dp, kKeys, j0, 0, j0 > 0 ? T(1) : T(0), dq + i0 * C3,
                 C3);  // dQ += dS·k
        }
      }
    }
  }
}

template void flash_attention_forward<float>(float*, float*, const float*, int64_t, int64_t,
                                             int64_t, int64_t, const uint8_t*, float);
template void flash_attention_forward<double>(double*, double*, const double*, int64_t, int64_t,
                                              int64_t, int64_t, const uint8_t*, double);
template void flash_attention_backward<float>(float*, const float*, const float*, const float*,
                                              const float*, int64_t, int64_t, int64_t, int64_t,
                                              const uint8_t*, float);
template void flash_attention_backward<double>(double*, const double*, const double*, const double*,
                                               const double*, int64_t, int64_t, int64_t, int64_t,
                                               const uint8_t*, double);

}  // namespace ms::cpu
