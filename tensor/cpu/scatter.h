// The backward of max over the middle axis of (outer, R, inner): each output
// gradient goes to the position reduce_max recorded (tensor/cpu/reductions.h).
#pragma once
#include <cstdint>

namespace ms::cpu {

// grad_in (outer, R, inner) is zero except grad_in[o, argmax[o, i], i] = grad_out[o, i].
template <typename T>
void argmax_scatter(T* grad_in, const T* grad_out, const int32_t* argmax, int64_t outer, int64_t R,
                    int64_t inner);

}  // namespace ms::cpu
