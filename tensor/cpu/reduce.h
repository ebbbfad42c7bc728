// Reductions over the middle axis of a contiguous (outer, R, inner) block:
// out (outer, inner). Reducing trailing dims is inner = 1; reducing leading
// dims (a bias gradient summed over tokens) is outer = 1 — both stay
// contiguous and vectorize without a transpose.
#pragma once
#include <cstdint>

namespace ms::cpu {

template <typename T>
void reduce_sum(const T* in, T* out, int64_t outer, int64_t R, int64_t inner);

// Max and the index (0..R-1) of its first occurrence; NaN propagates.
template <typename T>
void reduce_max(const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R, int64_t inner);

}  // namespace ms::cpu
