// Fused CPU kernels for the model, forward and backward side by side (the
// llm.c way). Raw pointers to contiguous buffers; T is float or double.
// Shapes in comments: N rows (tokens), C channels, V vocabulary.
#pragma once
#include <cstdint>

namespace ms::cpu {

// out (N, C) = softmax over C of in (N, C)
template <typename T>
void softmax_forward(T* out, const T* in, int64_t N, int64_t C);
// din (N, C) = out * (dout - sum_c dout*out)
template <typename T>
void softmax_backward(T* din, const T* dout, const T* out, int64_t N, int64_t C);

// out (N, C) = in - logsumexp(in) per row
template <typename T>
void log_softmax_forward(T* out, const T* in, int64_t N, int64_t C);
// din = dout - exp(out) * sum_c dout
template <typename T>
void log_softmax_backward(T* din, const T* dout, const T* out, int64_t N, int64_t C);

// out (N, C) = (in - mean) * rstd * w + b;  saves mean (N), rstd (N)
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* w, const T* b, int64_t N,
                       int64_t C, double eps);
// din (N, C) = ...; dw (C), db (C) are ACCUMULATED into (callers zero them).
template <typename T>
void layernorm_backward(T* din, T* dw, T* db, const T* dout, const T* in, const T* w, const T* mean,
                        const T* rstd, int64_t N, int64_t C);

// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
template <typename T>
void gelu_forward(T* out, const T* in, int64_t n);
template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, int64_t n);

// out (N, C) = weight[idx[n]] for weight (V, C); dweight (V, C) += scatter of dout.
template <typename T>
void embedding_forward(T* out, const T* weight, const int32_t* idx, int64_t N, int64_t C);
template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* idx, int64_t N, int64_t C);

// Mean cross-entropy of logits (N, V) against targets (N); saves lse (N), the
// per-row log-sum-exp, for backward. Returns the mean loss.
template <typename T>
double cross_entropy_forward(T* lse, const T* logits, const int32_t* targets, int64_t N, int64_t V);
// dlogits (N, V) = (softmax(logits) - onehot(target)) * dloss / N
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            double dloss, int64_t N, int64_t V);

}  // namespace ms::cpu
