// Ulysses: [T/C positions, all heads] -> [T positions, heads/C] -> attention
// -> back. The layout changes are views and contiguous copies of the op layer;
// the exchange is differentiable_all_to_all (parallel/comm/all_to_all_op.h).
#include "parallel/cp/ulysses.h"

#include "autograd/ops.h"
#include "parallel/comm/all_to_all_op.h"

namespace ms {

Tensor ulysses_attention(const Tensor& qkv_local, int64_t n_head_local, Communicator& cp,
                         double attn_p, Generator& gen) {
  const int64_t C = cp.size(), r = cp.rank();
  MS_CHECK(qkv_local.dim() == 3 && qkv_local.shape()[2] % 3 == 0,
           "cp attention (ulysses): qkv_local must be (B, T/C, 3·Cl), got ",
           shape_str(qkv_local.shape()));
  const int64_t B = qkv_local.shape()[0], Tl = qkv_local.shape()[1], Cl = qkv_local.shape()[2] / 3,
                T = Tl * C;
  MS_CHECK(n_head_local > 0 && Cl % n_head_local == 0, "cp attention (ulysses): width ", Cl,
           " is not divisible by n_head_local ", n_head_local);
  MS_CHECK(n_head_local % C == 0, "cp attention (ulysses): the ", n_head_local,
           " attention heads of this tp rank (n_head / tp) do not divide over cp = ", C,
           "; Ulysses gives every cp rank n_head / (tp · cp) whole heads, so n_head must be a "
           "multiple of tp · cp (or use --cp-algo ring or zigzag)");
  const int64_t Ch = Cl / C, nh = n_head_local / C;  // width and heads per cp rank after the swap
  // Heads are contiguous channel groups of q, k and v: block j of the send
  // buffer is heads [j·nh, (j+1)·nh) of q|k|v for our positions.
  Tensor send = contiguous(permute(view(qkv_local, {B, Tl, 3, C, Ch}), {3, 0, 1, 2, 4}));
  Tensor recv =
      differentiable_all_to_all(send, cp);  // (C, B, T/C, 3, Cl/C): block i = positions of rank i
  Tensor qkv_heads = reshape(permute(recv, {1, 0, 2, 3, 4}), {B, T, 3 * Ch});  // (B, T, 3·Cl/C)
  Tensor att;
  if (attn_p > 0) {
    // The serial model's mask over all heads, our heads' slice (dim 1).
    DropoutMask full = draw_dropout_mask({B, n_head_local, T, T}, attn_p, gen);
    att = causal_attention(qkv_heads, nh, slice_dropout_mask(full, r * nh, nh));
  } else {
    att = causal_attention(qkv_heads, nh);  // (B, T, Cl/C)
  }
  Tensor back = contiguous(permute(view(att, {B, C, Tl, Ch}), {1, 0, 2, 3}));  // (C, B, T/C, Cl/C)
  Tensor mine = differentiable_all_to_all(back, cp);  // block j: heads of rank j for our positions
  return reshape(permute(mine, {1, 2, 0, 3}), {B, Tl, Cl});  // (B, T/C, Cl)
}

}  // namespace ms
