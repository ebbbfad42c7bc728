// Causal multi-head self-attention as a blocked, fused kernel that never holds
// the (T, T) probabilities: FlashAttention's online softmax (Dao et al. 2022;
// Milakov & Gimelshein 2018) over key blocks, and FlashAttention-2's backward
// (Dao 2023), which recomputes each block's probabilities from q, k and the
// saved log-sum-exp. Same layout and results as attention.h's kernel (its
// reference twin, which stores P):
//
//   qkv (B, T, 3C): per token [q (C) | k (C) | v (C)], head h owns channels
//                   [h·hs, (h+1)·hs) of each, hs = C / NH
//   out (B, T, C):  softmax(q·kᵀ/√hs, causal) · v, heads side by side
//   lse (B, NH, T): log Σ_j exp(q_i·k_j/√hs) over the keys j ≤ i — all that
//                   backward needs besides q|k|v and out: O(T) per (b, h)
//                   instead of attention.h's O(T²)
//
// Per (b, h), K and V are packed into the GEMM's panel layout once
// (gemm_packed.h), then every tile of query rows multiplies against slices of
// them; key blocks past a tile's last row (the causal mask's zeros) are never
// computed. Attention dropout (GPT-2's attn_pdrop) as attention.h: `keep`
// (B, NH, T, T) bytes, out = (P ∘ keep·keep_scale)·v with P normalised
// before the drop. A CUDA twin with the same signatures is planned.
#pragma once
#include <cstdint>

namespace ms::cpu {

template <typename T>
void flash_attention_forward(T* out, T* lse, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                             int64_t NH, const uint8_t* keep = nullptr, T keep_scale = T(1));

// dqkv (B, T, 3C) is overwritten. `out` and `lse` are the forward's.
template <typename T>
void flash_attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                              int64_t B, int64_t Tlen, int64_t C, int64_t NH,
                              const uint8_t* keep = nullptr, T keep_scale = T(1));

}  // namespace ms::cpu
