#include "tensor/cpu/scatter.h"

#include <algorithm>

namespace ms::cpu {

template <typename T>
void argmax_scatter(T* grad_in, const T* grad_out, const int32_t* argmax, int64_t outer, int64_t R,
                    int64_t inner) {
  std::fill_n(grad_in, outer * R * inner, T(0));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i)
      grad_in[(o * R + argmax[o * inner + i]) * inner + i] = grad_out[o * inner + i];
}

template void argmax_scatter<float>(float*, const float*, const int32_t*, int64_t, int64_t,
                                    int64_t);
template void argmax_scatter<double>(double*, const double*, const int32_t*, int64_t, int64_t,
                                     int64_t);

}  // namespace ms::cpu
