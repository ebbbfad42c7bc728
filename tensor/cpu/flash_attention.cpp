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

// Keys query row i sees: a prefix [0, extent) of the head's keys.
template <typename T>
inline int64_t extent_of(const AttentionHead<T>& hd, int64_t i) {
  return hd.extent ? hd.extent[i] : i + 1;
}
// How many keys of block [j0, j0 + kb) query i sees.
template <typename T>
inline int64_t visible(const AttentionHead<T>& hd, int64_t i, int64_t j0, int64_t kb) {
  return std::clamp<int64_t>(extent_of(hd, i) - j0, 0, kb);
}
// The dropout mask's row of query i (null without dropout) and its entry for key j.
template <typename T>
inline const uint8_t* keep_row(const AttentionHead<T>& hd, int64_t i) {
  return hd.keep ? hd.keep + (hd.q_pos ? hd.q_pos[i] : i) * hd.keep_ld : nullptr;
}
template <typename T>
inline bool kept(const AttentionHead<T>& hd, const uint8_t* row, int64_t j) {
  return row[hd.k_pos ? hd.k_pos[j] : j] != 0;
}

// One key block of the online softmax for the tile's rows [i0, i0 + rows):
// s (rows, ld) holds the scaled scores of keys [j0, j0 + kb) and becomes the
// block's weights exp(s - m_new) (∘ keep·keep_scale with dropout), zero where
// masked; m, l (the running max and Σ exp) are updated and corr[r] =
// exp(m_old - m_new) is what the row's partial output must be scaled by.
template <typename T>
[[gnu::always_inline]] inline void online_block(const AttentionHead<T>& hd, T* s, int64_t ld,
                                                int64_t rows, int64_t i0, int64_t j0, int64_t kb,
                                                T* m, T* l, T* corr) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = s + r * ld;
    const int64_t n = visible(hd, i0 + r, j0, kb);
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
      if (const uint8_t* kr = keep_row(hd, i0 + r))
        for (int64_t j = 0; j < n; ++j)
          row[j] = kept(hd, kr, j0 + j) ? row[j] * hd.keep_scale : T(0);
    }
    for (int64_t j = n; j < kb; ++j) row[j] = T(0);
  }
}

// Backward of one block: from the scaled scores s and dP = dO·vᵀ (both
// (rows, ld)), P = exp(s - lse) recomputed; s becomes the dropped P (for
// dV) and dp becomes dS = P ∘ (m∘dP − delta)·scale (for dQ and dK), with
// m = keep·keep_scale (1 without dropout); zero where masked. lse and delta
// are the tile's rows.
template <typename T>
[[gnu::always_inline]] inline void backward_block(const AttentionHead<T>& hd, T* s, T* dp,
                                                  int64_t ld, int64_t rows, int64_t i0, int64_t j0,
                                                  int64_t kb, const T* lse, const T* delta,
                                                  T scale) {
  for (int64_t r = 0; r < rows; ++r) {
    T* pr = s + r * ld;
    T* dr = dp + r * ld;
    const int64_t n = visible(hd, i0 + r, j0, kb);
    const T L = lse[r], dl = delta[r];
    if (const uint8_t* kr = keep_row(hd, i0 + r)) {
      for (int64_t j = 0; j < n; ++j) {
        const T p = exp_of(pr[j] - L), mk = kept(hd, kr, j0 + j) ? hd.keep_scale : T(0);
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
void online_block_f32(const AttentionHead<float>& hd, float* s, int64_t ld, int64_t rows,
                      int64_t i0, int64_t j0, int64_t kb, float* m, float* l, float* corr) {
  online_block<float>(hd, s, ld, rows, i0, j0, kb, m, l, corr);
}
MS_VECTOR_CLONES
void backward_block_f32(const AttentionHead<float>& hd, float* s, float* dp, int64_t ld,
                        int64_t rows, int64_t i0, int64_t j0, int64_t kb, const float* lse,
                        const float* delta, float scale) {
  backward_block<float>(hd, s, dp, ld, rows, i0, j0, kb, lse, delta, scale);
}

template <typename T>
void online_block_any(const AttentionHead<T>& hd, T* s, int64_t ld, int64_t rows, int64_t i0,
                      int64_t j0, int64_t kb, T* m, T* l, T* corr) {
  if constexpr (std::is_same_v<T, float>)
    online_block_f32(hd, s, ld, rows, i0, j0, kb, m, l, corr);
  else
    online_block<T>(hd, s, ld, rows, i0, j0, kb, m, l, corr);
}
template <typename T>
void backward_block_any(const AttentionHead<T>& hd, T* s, T* dp, int64_t ld, int64_t rows,
                        int64_t i0, int64_t j0, int64_t kb, const T* lse, const T* delta, T scale) {
  if constexpr (std::is_same_v<T, float>)
    backward_block_f32(hd, s, dp, ld, rows, i0, j0, kb, lse, delta, scale);
  else
    backward_block<T>(hd, s, dp, ld, rows, i0, j0, kb, lse, delta, scale);
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

// The last key any row of tile [i0, i1) sees, plus one: the tile's key range.
template <typename T>
int64_t tile_keys(const AttentionHead<T>& hd, int64_t i0, int64_t i1) {
  int64_t n = 0;
  for (int64_t i = i0; i < i1; ++i) n = std::max(n, extent_of(hd, i));
  return std::min(n, hd.Tk);
}

bool worth_threads(int64_t B, int64_t NH, int64_t Tlen, int64_t hs) {
  return B * NH > 1 && B * NH * Tlen * Tlen * hs > (1 << 16);
}

}  // namespace

template <typename T>
void attention_head_forward(const AttentionHead<T>& hd, T* o, int64_t ldo, T* L) {
  const int64_t hs = hd.hs;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  HeadPanels<T>& pn = thread_panels<T>();
  Panel<T>& kt = pn.a;  // op(B) = kᵀ (hs, Tk)
  Panel<T>& vp = pn.b;  // op(B) = v (Tk, hs)
  kt.pack(true, hd.k, hd.ldk, hs, hd.Tk);
  vp.pack(false, hd.v, hd.ldv, hd.Tk, hs);
  T* s = pn.s.get(kRows * kKeys);                                            // (rows, kKeys)
  T *m = pn.m.get(kRows), *l = pn.l.get(kRows), *corr = pn.corr.get(kRows);  // (rows)
  for (int64_t i0 = 0; i0 < hd.Tq; i0 += kRows) {
    const int64_t i1 = std::min(hd.Tq, i0 + kRows), rows = i1 - i0;
    const int64_t nk = tile_keys(hd, i0, i1);  // keys past the tile's last visible one: skipped
    std::fill(m, m + kRows, -std::numeric_limits<T>::infinity());
    std::fill(l, l + kRows, T(0));
    for (int64_t j0 = 0; j0 < nk; j0 += kKeys) {
      const int64_t kb = std::min(nk, j0 + kKeys) - j0;
      kt.mul(false, rows, kb, hs, scale, hd.q + i0 * hd.ldq, hd.ldq, 0, j0, T(0), s,
             kKeys);  // S = q·kᵀ/√hs (rows, kb)
      online_block_any<T>(hd, s, kKeys, rows, i0, j0, kb, m, l, corr);
      if (j0 > 0)  // rescale the partial output to the new running max
        for (int64_t r = 0; r < rows; ++r)
          if (corr[r] != T(1))
            for (int64_t d = 0; d < hs; ++d) o[(i0 + r) * ldo + d] *= corr[r];
      vp.mul(false, rows, hs, kb, T(1), s, kKeys, j0, 0, j0 > 0 ? T(1) : T(0), o + i0 * ldo,
             ldo);  // O += W·v (rows, hs)
    }
    for (int64_t r = 0; r < rows; ++r) {
      T* orow = o + (i0 + r) * ldo;
      if (l[r] == T(0)) {  // no visible key: the merge's identity (online_softmax.h)
        std::fill(orow, orow + hs, T(0));
        L[i0 + r] = -std::numeric_limits<T>::infinity();
        continue;
      }
      const T inv = T(1) / l[r];
      for (int64_t d = 0; d < hs; ++d) orow[d] *= inv;
      L[i0 + r] = m[r] + std::log(l[r]);
    }
  }
}

// FlashAttention-2's backward, tiles of query rows outside, key blocks
// inside (one thread owns the head, so dK and dV accumulate in place):
//   P = exp(S − lse);  dV += (P∘m)ᵀ·dO;  dS = P ∘ (m∘(dO·vᵀ) − delta)/√hs
//   dQ += dS·k;  dK += dSᵀ·q
template <typename T>
void attention_head_backward(const AttentionHead<T>& hd, const T* dO, int64_t lddo, const T* L,
                             const T* delta, T* dq, int64_t lddq, T* dk, int64_t lddk, T* dv,
                             int64_t lddv) {
  const int64_t hs = hd.hs;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hs)));
  HeadPanels<T>& pn = thread_panels<T>();
  Panel<T>& kt = pn.a;   // op(B) = kᵀ (hs, Tk): scores
  Panel<T>& vt = pn.b;   // op(B) = vᵀ (hs, Tk): dP
  Panel<T>& kn = pn.c;   // op(B) = k (Tk, hs): dQ
  Panel<T>& qb = pn.d;   // op(B) = this tile's q (rows, hs): dK
  Panel<T>& dob = pn.e;  // op(B) = this tile's dO (rows, hs): dV
  kt.pack(true, hd.k, hd.ldk, hs, hd.Tk);
  vt.pack(true, hd.v, hd.ldv, hs, hd.Tk);
  kn.pack(false, hd.k, hd.ldk, hd.Tk, hs);
  T* s = pn.s.get(kRows * kKeys);    // (rows, kKeys)
  T* dp = pn.dp.get(kRows * kKeys);  // (rows, kKeys)
  for (int64_t i0 = 0; i0 < hd.Tq; i0 += kRows) {
    const int64_t i1 = std::min(hd.Tq, i0 + kRows), rows = i1 - i0;
    const int64_t nk = tile_keys(hd, i0, i1);
    if (nk == 0) continue;
    const T* qt = hd.q + i0 * hd.ldq;
    const T* dot = dO + i0 * lddo;
    qb.pack(false, qt, hd.ldq, rows, hs);
    dob.pack(false, dot, lddo, rows, hs);
    for (int64_t j0 = 0; j0 < nk; j0 += kKeys) {
      const int64_t kb = std::min(nk, j0 + kKeys) - j0;
      kt.mul(false, rows, kb, hs, scale, qt, hd.ldq, 0, j0, T(0), s, kKeys);  // S = q·kᵀ/√hs
      vt.mul(false, rows, kb, hs, T(1), dot, lddo, 0, j0, T(0), dp, kKeys);   // dO·vᵀ
      backward_block_any<T>(hd, s, dp, kKeys, rows, i0, j0, kb, L + i0, delta + i0, scale);
      dob.mul(true, kb, hs, rows, T(1), s, kKeys, 0, 0, T(1), dv + j0 * lddv,
              lddv);  // dV += (P∘m)ᵀ·dO
      qb.mul(true, kb, hs, rows, T(1), dp, kKeys, 0, 0, T(1), dk + j0 * lddk,
             lddk);  // dK += dSᵀ·q
      kn.mul(false, rows, hs, kb, T(1), dp, kKeys, j0, 0, T(1), dq + i0 * lddq,
             lddq);  // dQ += dS·k
    }
  }
}

template <typename T>
void flash_attention_forward(T* out, T* lse, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                             int64_t NH, const uint8_t* keep, T keep_scale) {
  const int64_t hs = C / NH, C3 = 3 * C;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(B, NH, Tlen, hs))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const T* q = qkv + b * Tlen * C3 + h * hs;  // (T, hs), row stride 3C
      AttentionHead<T> hd{q, C3, q + C, C3, q + 2 * C, C3, Tlen, Tlen, hs};
      hd.keep = keep ? keep + (b * NH + h) * Tlen * Tlen : nullptr;  // (T, T)
      hd.keep_ld = Tlen;
      hd.keep_scale = keep_scale;
      attention_head_forward(hd, out + b * Tlen * C + h * hs, C, lse + (b * NH + h) * Tlen);
    }
  }
}

// delta_i = Σ_d dO_id·O_id (= Σ_j P_ij·dP_ij, softmax's backward term, from
// the final output), then the head's backward into zeroed dq|dk|dv.
template <typename T>
void flash_attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                              int64_t B, int64_t Tlen, int64_t C, int64_t NH, const uint8_t* keep,
                              T keep_scale) {
  const int64_t hs = C / NH, C3 = 3 * C;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(B, NH, Tlen, hs))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const T* q = qkv + b * Tlen * C3 + h * hs;  // (T, hs), row stride 3C
      T* dq = dqkv + b * Tlen * C3 + h * hs;
      const T* dO = dout + b * Tlen * C + h * hs;  // (T, hs), row stride C
      const T* o = out + b * Tlen * C + h * hs;
      T* delta = thread_panels<T>().delta.get(Tlen);  // (T)
      for (int64_t i = 0; i < Tlen; ++i) {
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t d = 0; d < hs; ++d) acc += dO[i * C + d] * o[i * C + d];
        delta[i] = acc;
      }
      for (int64_t j = 0; j < Tlen; ++j)
        for (int64_t part = 0; part < 3; ++part)  // dq, dk, dv of this head
          std::fill(dq + j * C3 + part * C, dq + j * C3 + part * C + hs, T(0));
      AttentionHead<T> hd{q, C3, q + C, C3, q + 2 * C, C3, Tlen, Tlen, hs};
      hd.keep = keep ? keep + (b * NH + h) * Tlen * Tlen : nullptr;
      hd.keep_ld = Tlen;
      hd.keep_scale = keep_scale;
      attention_head_backward(hd, dO, C, lse + (b * NH + h) * Tlen, delta, dq, C3, dq + C, C3,
                              dq + 2 * C, C3);
    }
  }
}

#define MS_FLASH_INSTANTIATE(T)                                                                  \
  template void attention_head_forward<T>(const AttentionHead<T>&, T*, int64_t, T*);             \
  template void attention_head_backward<T>(const AttentionHead<T>&, const T*, int64_t, const T*, \
                                           const T*, T*, int64_t, T*, int64_t, T*, int64_t);     \
  template void flash_attention_forward<T>(T*, T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                           const uint8_t*, T);                                   \
  template void flash_attention_backward<T>(T*, const T*, const T*, const T*, const T*, int64_t, \
                                            int64_t, int64_t, int64_t, const uint8_t*, T);
MS_FLASH_INSTANTIATE(float)
MS_FLASH_INSTANTIATE(double)
#undef MS_FLASH_INSTANTIATE

}  // namespace ms::cpu
