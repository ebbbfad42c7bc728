#include "tensor/cpu/cross_entropy.h"

#include <cmath>
#include <type_traits>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {

// f32 rows take the vectorizable exp (vec_math.h) in loops built per ISA: libm's
// scalar exp over the (B·T, V) logits was ~1-2% of a training step. The row's
// sum is a float with `omp simd` partial sums (V terms, each in (0, 1]).
MS_VECTOR_CLONES
float sum_exp_f32(const float* x, float m, int64_t V) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += fast_expf(x[v] - m);
  return s;
}

MS_VECTOR_CLONES
void softmax_scaled_f32(float* d, const float* x, float lse, float scale, int64_t V) {
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) d[v] = fast_expf(x[v] - lse) * scale;
}

}  // namespace

template <typename T>
double cross_entropy_forward(T* lse, const T* logits, const int32_t* targets, int64_t N,
                             int64_t V) {
  double total = 0;
#pragma omp parallel for reduction(+ : total) if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = logits + n * V;
    T m = row_max(x, V);
    double s = 0;
    if constexpr (std::is_same_v<T, float>) {
      s = sum_exp_f32(x, m, V);
    } else {
      for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(x[v] - m));
    }
    double l = static_cast<double>(m) + std::log(s);
    lse[n] = static_cast<T>(l);
    total += l - static_cast<double>(x[targets[n]]);
  }
  return total / static_cast<double>(N);
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            double dloss, int64_t N, int64_t V) {
  T scale = static_cast<T>(dloss / static_cast<double>(N));
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = logits + n * V;
    T* d = dlogits + n * V;
    T l = lse[n];
    if constexpr (std::is_same_v<T, float>) {
      softmax_scaled_f32(d, x, l, scale, V);
    } else {
      for (int64_t v = 0; v < V; ++v) d[v] = std::exp(x[v] - l) * scale;
    }
    d[targets[n]] -= scale;
  }
}

template double cross_entropy_forward<float>(float*, const float*, const int32_t*, int64_t,
                                             int64_t);
template double cross_entropy_forward<double>(double*, const double*, const int32_t*, int64_t,
                                              int64_t);
template void cross_entropy_backward<float>(float*, const float*, const float*, const int32_t*,
                                            double, int64_t, int64_t);
template void cross_entropy_backward<double>(double*, const double*, const double*, const int32_t*,
                                             double, int64_t, int64_t);

}  // namespace ms::cpu
