#include "tensor/cpu/embedding.h"

#include <algorithm>

namespace ms::cpu {

template <typename T>
void embedding_forward(T* out, const T* weight, const int32_t* idx, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n)
    std::copy(weight + idx[n] * C, weight + idx[n] * C + C, out + n * C);
}

template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* idx, int64_t N, int64_t C) {
  // Serial over tokens: two tokens with the same id add into the same row.
  for (int64_t n = 0; n < N; ++n) {
    T* row = dweight + static_cast<int64_t>(idx[n]) * C;
    const T* g = dout + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) row[c] += g[c];
  }
}

template void embedding_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t);

}  // namespace ms::cpu
