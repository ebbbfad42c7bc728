// GELU, tanh approximation (Hendrycks & Gimpel), as GPT-2 uses:
//   0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
// Forward and backward side by side over n contiguous elements; T is float or
// double. A CUDA twin with the same signatures is planned (tensor/cuda/gelu.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

// out (n) = gelu(inp)
template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n);
// dinp (n) = gelu'(inp) * dout
template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, int64_t n);

}  // namespace ms::cpu
