// LayerNorm over the last dim, forward and backward side by side (llm.c's
// layernorm_forward / layernorm_backward). Raw pointers to contiguous buffers;
// T is float or double. A CUDA twin with the same signatures is planned
// (tensor/cuda/layernorm.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

// out (N, C) = (inp - mean) * rstd * weight + bias;  saves mean (N), rstd (N)
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps);
// dinp (N, C) is overwritten; dweight (C), dbias (C) are ACCUMULATED into (callers zero them).
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int64_t N, int64_t C);

}  // namespace ms::cpu
