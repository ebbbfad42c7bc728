// GELU (tanh approximation) on the GPU: the twin of tensor/cpu/gelu.h, same
// signatures with device pointers, plus the stream as the last argument
// (stream.h). T is float or double. Launches are asynchronous: results are
// ready once the stream is synchronized.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// out (n) = gelu(inp)
template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n, cudaStream_t stream);
// dinp (n) = gelu'(inp) * dout
template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, int64_t n, cudaStream_t stream);

}  // namespace ms::cuda
