// LayerNorm over the last dim on the GPU: the twin of tensor/cpu/layernorm.h
// with device pointers, plus the stream as the last argument (stream.h). T is
// float or double.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// out (N, C) = (inp - mean) * rstd * weight + bias;  saves mean (N), rstd (N)
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps, cudaStream_t stream);
// dinp (N, C) is overwritten; dweight (C), dbias (C) are ACCUMULATED into (callers zero them).
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int64_t N, int64_t C, cudaStream_t stream);

}  // namespace ms::cuda
