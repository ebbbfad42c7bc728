#include "tensor/cpu/reductions.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ms::cpu {

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
      double acc[kCols] = {};
      for (int64_t r = 0; r < R; ++r) {
        const T* row = in + r * inner;
#pragma omp simd
        for (int64_t i = c0; i < c1; ++i) acc[i - c0] += row[i];
      }
      for (int64_t i = c0; i < c1; ++i) out[i] = static_cast<T>(acc[i - c0]);
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

double sum_squares(const float* x, int64_t n) {
  double total = 0;
#pragma omp parallel for simd reduction(+ : total) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) total += static_cast<double>(x[j]) * x[j];
  return total;
}

template void reduce_sum<float>(const float*, float*, int64_t, int64_t, int64_t);
template void reduce_sum<double>(const double*, double*, int64_t, int64_t, int64_t);
template void reduce_max<float>(const float*, float*, int32_t*, int64_t, int64_t, int64_t);
template void reduce_max<double>(const double*, double*, int32_t*, int64_t, int64_t, int64_t);

}  // namespace ms::cpu
