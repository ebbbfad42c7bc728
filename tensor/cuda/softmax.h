// Row-wise softmax and log-softmax on the GPU: the twin of tensor/cpu/softmax.h
// with device pointers, plus the stream as the last argument (stream.h). One
// thread block per row. T is float or double.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// out (N, C) = softmax over C of inp (N, C)
template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C, cudaStream_t stream);
// dinp (N, C) = out * (dout - sum_c dout*out)
template <typename T>
void softmax_backward(T* dinp, const T* dout, const T* out, int64_t N, int64_t C,
                      cudaStream_t stream);

// out (N, C) = inp - logsumexp(inp) per row
template <typename T>
void log_softmax_forward(T* out, const T* inp, int64_t N, int64_t C, cudaStream_t stream);
// dinp (N, C) = dout - exp(out) * sum_c dout
template <typename T>
void log_softmax_backward(T* dinp, const T* dout, const T* out, int64_t N, int64_t C,
                          cudaStream_t stream);

}  // namespace ms::cuda
