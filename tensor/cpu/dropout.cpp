#include "tensor/cpu/dropout.h"

namespace ms::cpu {

template <typename T>
void dropout_apply(T* out, const T* x, const uint8_t* keep, T scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = keep[i] ? x[i] * scale : T(0);
}

template void dropout_apply<float>(float*, const float*, const uint8_t*, float, int64_t);
template void dropout_apply<double>(double*, const double*, const uint8_t*, double, int64_t);

}  // namespace ms::cpu
