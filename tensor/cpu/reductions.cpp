#include "tensor/cpu/reductions.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {

// out[i] = Σ_r in[r·ld + i] for i < n ≤ W: a column block summed down the rows
// (a bias gradient over all tokens), in double.
template <typename T, int W>
[[gnu::always_inline]] inline void sum_rows(const T* in, T* out, int64_t R, int64_t ld, int64_t n) {
  double acc[W] = {};
  for (int64_t r = 0; r < R; ++r) {
    const T* row = in + r * ld;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) acc[i] += row[i];
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(acc[i]);
}

// The f32 instance built per ISA (vec_math.h): with doubles the baseline build
// adds 2 lanes at a time, and bias gradients were ~3% of a training step.
MS_VECTOR_CLONES
void sum_rows_f32(const float* in, float* out, int64_t R, int64_t ld, int64_t n) {
  sum_rows<float, 256>(in, out, R, ld, n);
}

}  // namespace

// Sums accumulate in double: a loss or gradient norm summed over 10^6
// elements in f32 would lose the digits the tests compare against PyTorch.
template <typename T>
void reduce_sum(const T* in, T* out, int64_t outer, int64_t R, int64_t inner) {
  if (inner == 1) {
#pragma omp parallel for if (outer * R > (1 << 16)) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = in + o * R;
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t r = 0; r < R; ++r) acc += row[r];
      out[o] = static_cast<T>(acc);
    }
    return;
  }
  if (outer == 1) {
    // Summing over leading dims (a bias gradient over all tokens): split the
    // columns across threads instead, or one thread would do all the work.
    constexpr int64_t kCols = 256;
    const int64_t blocks = (inner + kCols - 1) / kCols;
#pragma omp parallel for if (R * inner > (1 << 16)) schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kCols, c1 = std::min(inner, c0 + kCols);
      if constexpr (std::is_same_v<T, float>) {
        sum_rows_f32(in + c0, out + c0, R, inner, c1 - c0);
      } else {
        sum_rows<T, kCols>(in + c0, out + c0, R, inner, c1 - c0);
      }
    }
    return;
  }
#pragma omp parallel if (outer * R * inner > (1 << 16))
  {
    std::vector<double> acc(inner);
#pragma omp for schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t r = 0; r < R; ++r) {
        const T* row = in + (o * R + r) * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) acc[i] += row[i];
      }
      for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = static_cast<T>(acc[i]);
    }
  }
}

template <typename T>
void reduce_max(const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = in + o * R * inner + i;
      T best = p[0];
      int32_t at = 0;
      for (int64_t r = 1; r < R && !std::isnan(best); ++r) {
        T v = p[r * inner];
        if (v > best || std::isnan(v)) {
          best = v;
          at = static_cast<int32_t>(r);
        }
      }
      out[o * inner + i] = best;
      argmax[o * inner + i] = at;
    }
  }
}

namespace {

// Σ x² over one span, in double, built per ISA (vec_math.h): the baseline
// build converts and adds 2 doubles at a time.
MS_VECTOR_CLONES
double sum_squares_span(const float* x, int64_t n) {
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) total += static_cast<double>(x[j]) * x[j];
  return total;
}

}  // namespace

// Clipping's global norm (optim/optimizer.cpp): fixed spans summed in span
// order, so the value does not depend on the thread count.
double sum_squares(const float* x, int64_t n) {
  constexpr int64_t kSpan = 1 << 14;
  const int64_t spans = (n + kSpan - 1) / kSpan;
  std::vector<double> partial(static_cast<size_t>(spans));  // (spans)
#pragma omp parallel for if (n > (1 << 16)) schedule(static)
  for (int64_t s = 0; s < spans; ++s)
    partial[s] = sum_squares_span(x + s * kSpan, std::min(kSpan, n - s * kSpan));
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template void reduce_sum<float>(const float*, float*, int64_t, int64_t, int64_t);
template void reduce_sum<double>(const double*, double*, int64_t, int64_t, int64_t);
template void reduce_max<float>(const float*, float*, int32_t*, int64_t, int64_t, int64_t);
template void reduce_max<double>(const double*, double*, int32_t*, int64_t, int64_t, int64_t);

}  // namespace ms::cpu
