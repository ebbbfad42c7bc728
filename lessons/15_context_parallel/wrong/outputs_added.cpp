// expect: out = out_a + out_b
// Lesson 15, deliberately wrong: adds the two normalised outputs.
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
    m.lse[i] = lse;
    for (int64_t d = 0; d < a.dim; ++d)
      m.out[i * a.dim + d] = a.out[i * a.dim + d] + b.out[i * a.dim + d];  // BUG: weighs 2
  }
  return m;
}

BlockMask causal_block(int q_chunk, int k_chunk) {
  if (k_chunk < q_chunk) return BlockMask::Full;       // every key is in every query's past
  if (k_chunk == q_chunk) return BlockMask::Diagonal;  // same positions: the triangle j <= i
  return BlockMask::Skip;                              // the future: nothing to compute
}
