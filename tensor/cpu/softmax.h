// Row-wise softmax and log-softmax, forward and backward side by side (the
// llm.c way). Raw pointers to contiguous buffers; T is float or double (f64 for
// gradient checks). A CUDA twin with the same signatures is planned
// (tensor/cuda/softmax.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

// out (N, C) = softmax over C of inp (N, C)
template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C);
// dinp (N, C) = out * (dout - sum_c dout*out)
template <typename T>
void softmax_backward(T* dinp, const T* dout, const T* out, int64_t N, int64_t C);

// out (N, C) = inp - logsumexp(inp) per row
template <typename T>
void log_softmax_forward(T* out, const T* inp, int64_t N, int64_t C);
// dinp (N, C) = dout - exp(out) * sum_c dout
template <typename T>
void log_softmax_backward(T* dinp, const T* dout, const T* out, int64_t N, int64_t C);

}  // namespace ms::cpu
