// Embedding lookup and its scatter-add backward. Raw pointers; T is float or
// double. A CUDA twin with the same signatures is planned (tensor/cuda/embedding.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

// out (N, C) = weight[idx[n]] for weight (V, C); idx (N) already range-checked.
template <typename T>
void embedding_forward(T* out, const T* weight, const int32_t* idx, int64_t N, int64_t C);
// dweight (V, C) += scatter of dout (N, C) by idx (N).
template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* idx, int64_t N, int64_t C);

}  // namespace ms::cpu
