// Causal multi-head self-attention on the GPU over GPT-2's packed QKV: the
// twin of tensor/cpu/attention.h (same layouts, same saved att), device
// pointers, the stream as the last argument (stream.h). T is float or double.
//
//   qkv (B, T, 3C): per token [q (C) | k (C) | v (C)], head h owns channels
//                   [h·hs, (h+1)·hs) of each, hs = C / NH
//   att (B, NH, T, T): softmax(q·kᵀ / √hs) with the causal mask (zeros above
//                   the diagonal), saved for backward
//   out (B, T, C):  att · v, heads side by side
//
// These are plain (not flash) kernels: they materialize att, as the CPU twin
// and llm.c's attention_forward do, so the backward has the same inputs.
// Every output element is written by one thread summing in a fixed order: no
// atomics, so results are bitwise reproducible run to run.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t Tlen, int64_t C, int64_t NH,
                       cudaStream_t stream);

// dqkv (B, T, 3C) is overwritten; datt_scratch is (B, NH, T, T) working memory.
template <typename T>
void attention_backward(T* dqkv, T* datt_scratch, const T* dout, const T* qkv, const T* att,
                        int64_t B, int64_t Tlen, int64_t C, int64_t NH, cudaStream_t stream);

}  // namespace ms::cuda
