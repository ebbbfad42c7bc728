// Mean cross-entropy over rows of logits on the GPU: the twin of
// tensor/cpu/cross_entropy.h with device pointers (the stream the last argument,
// stream.h), and the fused classifier llm.c's train_gpt2.cu uses instead.
// T is float or double.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// Mean cross-entropy of logits (N, V) against targets (N); saves lse (N), the
// per-row log-sum-exp, for backward. Returns the mean loss, so it waits for
// the stream (like Tensor::item()). targets already range-checked on the host.
template <typename T>
double cross_entropy_forward(T* lse, const T* logits, const int32_t* targets, int64_t N, int64_t V,
                             cudaStream_t stream);
// dlogits (N, V) = (softmax(logits) - onehot(target)) * dloss / N
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            double dloss, int64_t N, int64_t V, cudaStream_t stream);

// Forward and backward in one kernel, without a probabilities buffer (llm.c's
// fused_classifier): per row, losses[n] = lse - logits[n, target] and the row
// of logits is OVERWRITTEN by its gradient (softmax - onehot) * dloss / N.
// At GPT-2's V = 50257 and B·T = 8192 the (N, V) f32 logits are 1.6 GB; the
// unfused pair reads them twice and writes a second 1.6 GB buffer. The mean
// loss is the sum of losses (N) / N, left on the device (no sync here).
template <typename T>
void fused_classifier(T* logits_to_dlogits, T* losses, const int32_t* targets, double dloss,
                      int64_t N, int64_t V, cudaStream_t stream);

}  // namespace ms::cuda
