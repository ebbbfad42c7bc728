#include "tensor/cpu/moe.h"

#include <algorithm>
#include <vector>

namespace ms::cpu {

namespace {

// Index of the largest gate of row g, skipping `skip`; the first on ties.
template <typename T>
int32_t argmax_except(const T* g, int64_t E, int64_t skip) {
  int64_t best = -1;
  for (int64_t e = 0; e < E; ++e)
    if (e != skip && (best < 0 || g[e] > g[best])) best = e;
  return static_cast<int32_t>(best);
}

}  // namespace

template <typename T>
void moe_choose(const T* gates, int64_t S, int64_t E, int64_t k, int32_t* expert,
                int32_t* first_counts, int32_t* counts, T* fraction) {
  std::fill(first_counts, first_counts + E, 0);
  std::fill(counts, counts + E, 0);
  for (int64_t s = 0; s < S; ++s) {
    const T* g = gates + s * E;
    int32_t first = argmax_except(g, E, -1);
    expert[s * k] = first;
    ++first_counts[first];
    ++counts[first];
    if (k == 2) {
      int32_t second = argmax_except(g, E, first);
      expert[s * k + 1] = second;
      ++counts[second];
    }
  }
  for (int64_t e = 0; e < E; ++e)
    fraction[e] = S == 0 ? T(0) : static_cast<T>(first_counts[e]) / static_cast<T>(S);
}

void moe_assign_slots(const int32_t* expert, const int32_t* first_counts, int64_t S, int64_t E,
                      int64_t k, int64_t capacity, int32_t* slot, int32_t* kept) {
  std::fill(kept, kept + E, 0);
  std::vector<int64_t> next(E, 0);
  for (int64_t j = 0; j < k; ++j) {
    for (int64_t e = 0; e < E; ++e) next[e] = j == 0 ? 0 : first_counts[e];
    for (int64_t s = 0; s < S; ++s) {
      const int32_t e = expert[s * k + j];
      const int64_t location = next[e]++;
      const bool fits = location < capacity;
      slot[s * k + j] = fits ? static_cast<int32_t>(location) : -1;
      if (fits) ++kept[e];
    }
  }
}

template <typename T>
void moe_gate_weights_forward(T* weights, const T* gates, const int32_t* expert,
                              const int32_t* slot, int64_t S, int64_t E, int64_t k,
                              bool renormalize, T eps) {
  for (int64_t s = 0; s < S; ++s) {
    T sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      const T g = slot[s * k + j] >= 0 ? gates[s * E + expert[s * k + j]] : T(0);
      weights[s * k + j] = g;
      sum += g;
    }
    if (renormalize)
      for (int64_t j = 0; j < k; ++j) weights[s * k + j] /= std::max(sum, eps);
  }
}

template <typename T>
void moe_gate_weights_backward(T* dgates, const T* dweights, const T* weights, const T* gates,
                               const int32_t* expert, const int32_t* slot, int64_t S, int64_t E,
                               int64_t k, bool renormalize, T eps) {
  std::fill(dgates, dgates + S * E, T(0));
  for (int64_t s = 0; s < S; ++s) {
    const T* dw = dweights + s * k;
    const T* w = weights + s * k;
    T sum = 0, dot = 0;
    for (int64_t j = 0; j < k; ++j) {
      if (slot[s * k + j] < 0) continue;
      sum += gates[s * E + expert[s * k + j]];
      dot += dw[j] * w[j];
    }
    // w_j = g_j / D with D = Σ kept g: dL/dg_i = (dw_i − Σ_j dw_j w_j) / D.
    // Below eps the clamp holds D constant, so only dw_i / eps remains.
    const bool clamped = sum < eps;
    for (int64_t j = 0; j < k; ++j) {
      if (slot[s * k + j] < 0) continue;
      T& d = dgates[s * E + expert[s * k + j]];
      if (!renormalize)
        d += dw[j];
      else
        d += clamped ? dw[j] / eps : (dw[j] - dot) / sum;
    }
  }
}

template <typename T>
void moe_dispatch_forward(T* buffer, const T* x, const int32_t* expert, const int32_t* slot,
                          int64_t S, int64_t k, int64_t capacity, int64_t E, int64_t C) {
  std::fill(buffer, buffer + E * capacity * C, T(0));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t c = slot[s * k + j];
      if (c < 0) continue;
      std::copy(x + s * C, x + s * C + C, buffer + (expert[s * k + j] * capacity + c) * C);
    }
}

template <typename T>
void moe_dispatch_backward(T* dx, const T* dbuffer, const int32_t* expert, const int32_t* slot,
                           int64_t S, int64_t k, int64_t capacity, int64_t C) {
  std::fill(dx, dx + S * C, T(0));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t c = slot[s * k + j];
      if (c < 0) continue;
      const T* g = dbuffer + (expert[s * k + j] * capacity + c) * C;
      T* row = dx + s * C;
#pragma omp simd
      for (int64_t i = 0; i < C; ++i) row[i] += g[i];
    }
}

template <typename T>
void moe_combine_forward(T* out, const T* y, const T* weights, const int32_t* expert,
                         const int32_t* slot, int64_t S, int64_t k, int64_t capacity, int64_t C) {
  std::fill(out, out + S * C, T(0));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t c = slot[s * k + j];
      if (c < 0) continue;
      const T w = weights[s * k + j];
      const T* src = y + (expert[s * k + j] * capacity + c) * C;
      T* row = out + s * C;
#pragma omp simd
      for (int64_t i = 0; i < C; ++i) row[i] += w * src[i];
    }
}

template <typename T>
void moe_combine_backward(T* dy, T* dweights, const T* dout, const T* y, const T* weights,
                          const int32_t* expert, const int32_t* slot, int64_t S, int64_t k,
                          int64_t capacity, int64_t E, int64_t C) {
  std::fill(dy, dy + E * capacity * C, T(0));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t c = slot[s * k + j];
      dweights[s * k + j] = 0;
      if (c < 0) continue;
      const int64_t at = (expert[s * k + j] * capacity + c) * C;
      const T w = weights[s * k + j];
      const T* g = dout + s * C;
      T dot = 0;
      for (int64_t i = 0; i < C; ++i) {
        dy[at + i] = w * g[i];  // one (token, choice) per slot: an assignment
        dot += g[i] * y[at + i];
      }
      dweights[s * k + j] = dot;
    }
}

#define MS_MOE_INSTANTIATE(T)                                                                      \
  template void moe_choose<T>(const T*, int64_t, int64_t, int64_t, int32_t*, int32_t*, int32_t*,   \
                              T*);                                                                 \
  template void moe_gate_weights_forward<T>(T*, const T*, const int32_t*, const int32_t*, int64_t, \
                                            int64_t, int64_t, bool, T);                            \
  template void moe_gate_weights_backward<T>(T*, const T*, const T*, const T*, const int32_t*,     \
                                             const int32_t*, int64_t, int64_t, int64_t, bool, T);  \
  template void moe_dispatch_forward<T>(T*, const T*, const int32_t*, const int32_t*, int64_t,     \
                                        int64_t, int64_t, int64_t, int64_t);                       \
  template void moe_dispatch_backward<T>(T*, const T*, const int32_t*, const int32_t*, int64_t,    \
                                         int64_t, int64_t, int64_t);                               \
  template void moe_combine_forward<T>(T*, const T*, const T*, const int32_t*, const int32_t*,     \
                                       int64_t, int64_t, int64_t, int64_t);                        \
  template void moe_combine_backward<T>(T*, T*, const T*, const T*, const T*, const int32_t*,      \
                                        const int32_t*, int64_t, int64_t, int64_t, int64_t,        \
                                        int64_t);
MS_MOE_INSTANTIATE(float)
MS_MOE_INSTANTIATE(double)
#undef MS_MOE_INSTANTIATE

}  // namespace ms::cpu
