// expect: merge(empty, p) made NaN
// expect: Shift by the max of the two lse
// Lesson 15, deliberately wrong: shifts by lse_a instead of the max, so a masked a makes −inf + inf.
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
    // BUG: the shift is a's lse, not the larger one: la = −inf gives −inf + log(inf).
    const double lse = la + std::log1p(std::exp(lb - la));
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
