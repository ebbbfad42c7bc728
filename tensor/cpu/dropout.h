// Applying a dropout keep-mask (one byte per element, autograd/ops.h
// DropoutMask): the forward and the backward of dropout are the same map.
#pragma once
#include <cstdint>

namespace ms::cpu {

// out[i] = keep[i] ? x[i] * scale : 0, n contiguous elements.
template <typename T>
void dropout_apply(T* out, const T* x, const uint8_t* keep, T scale, int64_t n);

}  // namespace ms::cpu
