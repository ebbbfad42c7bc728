// Causal multi-head self-attention, fused (forward and backward side by side),
// over the packed QKV projection GPT-2 produces.
//
//   qkv (B, T, 3C): per token [q (C) | k (C) | v (C)], head h owns channels
//                   [h·hs, (h+1)·hs) of each, hs = C / NH
//   att (B, NH, T, T): softmax(q·kᵀ / √hs) with the causal mask (saved for backward)
//   out (B, T, C):  att · v, heads side by side
//
// Per (b, h) the products are GEMMs on strided views of qkv (leading dim 3C),
// so nothing is transposed or copied into head-major layout. The GEMMs run in
// blocks of query rows and skip the key blocks the causal mask zeroes. The
// op runs the blocked kernel that keeps no P (flash_attention.h); this one is
// its reference in tests/test_attention_kernel.cpp and bench/bench_attention.cpp,
// and the CPU twin of tensor/cuda/attention.h.
#pragma once
#include <cstdint>

namespace ms::cpu {

//
// Attention dropout (GPT-2's attn_pdrop): with `keep` (B, NH, T, T) bytes,
// 1 = kept, out = (P ∘ keep · keep_scale)·v with keep_scale = 1/(1-p); `att`
// still receives P (softmax's backward needs it), and the dropped copy is
// rebuilt from P and the mask where it is needed instead of being stored.
template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                       int64_t NH, const uint8_t* keep = nullptr, T keep_scale = T(1));

// dqkv (B, T, 3C) is overwritten; datt_scratch is (B, NH, T, T) working memory.
template <typename T>
void attention_backward(T* dqkv, T* datt_scratch, const T* dout, const T* qkv, const T* att,
                        int64_t B, int64_t Tlen, int64_t C, int64_t NH,
                        const uint8_t* keep = nullptr, T keep_scale = T(1));

}  // namespace ms::cpu
