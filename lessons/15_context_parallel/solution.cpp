// Lesson 15 reference: the online-softmax merge of two partial attention
// results, and the causal mask of one (query chunk, key chunk) pair — the two
// rules ring attention is made of (Liu et al. 2023; picotron's
// update_out_and_lse, ring-flash-attention's _update_out_and_lse; Megatron's
// context parallelism runs the same merge on TransformerEngine's outputs).
#include <algorithm>
#include <cmath>

#include "lessons/15_context_parallel/lesson.h"

Partial merge_partials(const Partial& a, const Partial& b) {
  Partial m = empty_partial(a.rows, a.dim);
  for (int64_t i = 0; i < a.rows; ++i) {
    const double la = a.lse[i], lb = b.lse[i];
    // Masked in both: the empty sum stays empty. Without this, the max below
    // is −inf and exp(−inf − (−inf)) = exp(NaN).
    if (std::isinf(la) && la < 0 && std::isinf(lb) && lb < 0) continue;
    // log(e^la + e^lb), computed around the larger one so neither overflows.
    const double hi = std::max(la, lb);
    const double lse = hi + std::log(std::exp(la - hi) + std::exp(lb - hi));
    // Each partial is normalised over its own block; its share of the union
    // is e^(l − lse): BOTH outputs are rescaled, the old one too.
    const double wa = std::exp(la - lse), wb = std::exp(lb - lse);
    m.lse[i] = lse;
    for (int64_t d = 0; d < a.dim; ++d)
      m.out[i * a.dim + d] = wa * a.out[i * a.dim + d] + wb * b.out[i * a.dim + d];
  }
  return m;
}

BlockMask causal_block(int q_chunk, int k_chunk) {
  if (k_chunk < q_chunk) return BlockMask::Full;       // every key is in every query's past
  if (k_chunk == q_chunk) return BlockMask::Diagonal;  // same positions: the triangle j <= i
  return BlockMask::Skip;                              // the future: nothing to compute
}
