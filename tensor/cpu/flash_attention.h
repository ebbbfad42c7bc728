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

// One (batch, head) of the blocked kernel over general query and key rows —
// the piece the serial op below and ring attention's partials
// (parallel/cp/online_softmax.cpp) share. Rows are hs contiguous values,
// ld apart. Query i sees the keys [0, extent[i]) (a prefix: key positions
// increase); extent null means i + 1, the serial causal mask. With dropout,
// `keep` is this head's (T, T) mask (keep_ld = T), looked up at (q_pos[i],
// k_pos[j]) (null: i, j).
template <typename T>
struct AttentionHead {
  const T* q;
  int64_t ldq;
  const T* k;
  int64_t ldk;
  const T* v;
  int64_t ldv;
  int64_t Tq, Tk, hs;
  const int64_t* extent = nullptr;  // (Tq)
  const uint8_t* keep = nullptr;
  int64_t keep_ld = 0;
  const int64_t* q_pos = nullptr;  // (Tq)
  const int64_t* k_pos = nullptr;  // (Tk)
  T keep_scale = T(1);
};

// out (Tq, hs), ldo apart: the head's attention over its keys; lse (Tq). A
// row that sees no key gets out 0 and lse -inf (online_softmax.h's identity).
template <typename T>
void attention_head_forward(const AttentionHead<T>& head, T* out, int64_t ldo, T* lse);

// Adds the head's share to dq (like q), dk and dv (like k, v), given the
// final lse and delta_i = Σ_d dO_id·O_id of the queries over ALL keys.
template <typename T>
void attention_head_backward(const AttentionHead<T>& head, const T* dout, int64_t lddo,
                             const T* lse, const T* delta, T* dq, int64_t lddq, T* dk, int64_t lddk,
                             T* dv, int64_t lddv);

template <typename T>
void flash_attention_forward(T* out, T* lse, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                             int64_t NH, const uint8_t* keep = nullptr, T keep_scale = T(1));

// dqkv (B, T, 3C) is overwritten. `out` and `lse` are the forward's.
template <typename T>
void flash_attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                              int64_t B, int64_t Tlen, int64_t C, int64_t NH,
                              const uint8_t* keep = nullptr, T keep_scale = T(1));

}  // namespace ms::cpu
