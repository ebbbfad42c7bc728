// Mean cross-entropy over rows of logits, forward and backward side by side
// (llm.c fuses it with the softmax the same way). Raw pointers; T is float or
// double. A CUDA twin with the same signatures is planned
// (tensor/cuda/cross_entropy.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

// Mean cross-entropy of logits (N, V) against targets (N); saves lse (N), the
// per-row log-sum-exp, for backward. Returns the mean loss.
template <typename T>
double cross_entropy_forward(T* lse, const T* logits, const int32_t* targets, int64_t N, int64_t V);
// dlogits (N, V) = (softmax(logits) - onehot(target)) * dloss / N
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            double dloss, int64_t N, int64_t V);

}  // namespace ms::cpu
