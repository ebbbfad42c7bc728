// Blockwise attention with the log-sum-exp carried along: the piece ring
// attention is made of (Milakov & Gimelshein 2018, "Online normalizer
// calculation for softmax"; FlashAttention, Dao et al. 2022, and its
// backward from the saved lse, FlashAttention-2, Dao 2023).
//
// A partial result over a subset K of the keys is (out_K, lse_K): out_K the
// softmax-weighted average of the values over K alone, lse_K = log Σ_{j∈K}
// exp(s_j), s_j = q·k_j/√hs. Two disjoint subsets merge exactly:
//   lse = log(exp(lse_a) + exp(lse_b))           (computed as max + log1p(exp(-|lse_a - lse_b|)))
//   out = exp(lse_a - lse)·out_a + exp(lse_b - lse)·out_b
// so attention over all keys is the merge of the blocks' partials in any order
// (picotron's update_out_and_lse, context_parallel.py, is the same rule
// written with sigmoids). A row that sees no key of a block (a causally
// masked block) has lse = -inf and out = 0, the merge's identity.
//
// Causality is by global position: key j is visible to query i when
// k_pos[j] <= q_pos[i], which covers the diagonal block of the ring and both
// chunks of zig-zag alike; key positions must increase, so what a query sees
// is a prefix of the keys. The partial is computed by the serial model's
// blocked kernel, one (batch, head) at a time (tensor/cpu/flash_attention.h,
// attention_head_forward/backward: online softmax over key blocks, K and V
// packed once per head): a key range after a whole tile of query rows is
// never computed, masked pairs inside a tile's range get weight 0.
// Attention dropout (GPT-2's attn_pdrop) uses the serial model's whole mask
// (B, n_head, T, T), looked up at (q_pos, k_pos): out_K = Σ exp(s_j - lse_K)·
// keep_j/(1-p)·v_j, normalised without the mask, as the serial kernel does.
//
// Layout: q (B, Tq, n_head·hs), k and v (B, Tk, n_head·hs), heads side by side
// (GPT-2's packed projection); any strides with the last dim contiguous, so
// narrow() views of q|k|v work. lse is (B, n_head, Tq). CPU kernels (f32, f64).
#pragma once
#include <vector>

#include "autograd/ops.h"

namespace ms {

struct PartialAttention {
  Tensor out;  // (B, Tq, n_head·hs)
  Tensor lse;  // (B, n_head, Tq); -inf where the row saw no key
};

// The identity of the merge: out = 0, lse = -inf.
PartialAttention empty_partial(int64_t B, int64_t Tq, int64_t n_head, int64_t hs, DType dtype);

// Attention of q (at q_pos) over k, v (at k_pos), causal by position.
PartialAttention attention_partial(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const std::vector<int64_t>& q_pos,
                                   const std::vector<int64_t>& k_pos, int64_t n_head,
                                   const DropoutMask* attn_mask = nullptr);

// acc <- merge(acc, part): the rule above, in place.
void merge_partial(PartialAttention& acc, const PartialAttention& part);

// merge_partial(acc, attention_partial(...)) without the temporary.
void attention_accumulate(PartialAttention& acc, const Tensor& q, const Tensor& k, const Tensor& v,
                          const std::vector<int64_t>& q_pos, const std::vector<int64_t>& k_pos,
                          int64_t n_head, const DropoutMask* attn_mask = nullptr);

// delta (B, n_head, Tq) = Σ over a head's channels of dout ∘ out: the
// Σ_j P_ij·dP_ij term of softmax's backward, from the final output.
Tensor attention_delta(const Tensor& dout, const Tensor& out, int64_t n_head);

// Backward of one (query block, key block) pair, given the FINAL lse and delta
// of the queries (over all keys): adds the block's share to dq (like q), dk
// and dv (like k, v): P_ij = exp(s_ij - lse_i), dV_j += P_ij·m_ij·dO_i,
// dS_ij = P_ij·(m_ij·dO_i·v_j - delta_i), dQ_i += dS_ij·k_j/√hs,
// dK_j += dS_ij·q_i/√hs, with m_ij = keep/(1-p) (1 without dropout).
void attention_partial_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& dout, const Tensor& lse, const Tensor& delta,
                                const std::vector<int64_t>& q_pos,
                                const std::vector<int64_t>& k_pos, int64_t n_head,
                                const DropoutMask* attn_mask, const Tensor& dq, const Tensor& dk,
                                const Tensor& dv);

}  // namespace ms
