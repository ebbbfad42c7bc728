// Reductions over the middle axis of a contiguous (outer, R, inner) block:
// out (outer, inner). Reducing trailing dims is inner = 1; reducing leading
// dims (a bias gradient summed over tokens) is outer = 1 — both stay
// contiguous and vectorize without a transpose. A CUDA twin with the same
// signatures is planned (tensor/cuda/reductions.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

template <typename T>
void reduce_sum(const T* in, T* out, int64_t outer, int64_t R, int64_t inner);

// Max and the index (0..R-1) of its first occurrence; NaN propagates.
template <typename T>
void reduce_max(const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R, int64_t inner);

// sum of x[i]² over n contiguous floats, accumulated in double (the global
// gradient norm for clipping).
double sum_squares(const float* x, int64_t n);

}  // namespace ms::cpu
