// Applying a dropout keep-mask on the GPU: the twin of tensor/cpu/dropout.h,
// with the stream last and explicit (docs/architecture.md, the stream rule).
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// out[i] = keep[i] ? x[i] * scale : 0; out, x and keep are device pointers.
template <typename T>
void dropout_apply(T* out, const T* x, const uint8_t* keep, T scale, int64_t n,
                   cudaStream_t stream);

}  // namespace ms::cuda
