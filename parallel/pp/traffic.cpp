// The pipeline's per-step traffic (traffic.h).
#include "parallel/pp/traffic.h"

#include "tensor/error.h"

namespace ms {

StepFormula pp_step_formula(const PpTrafficShape& s) {
  MS_CHECK(s.pp >= 1 && s.virtual_stages >= 1 && s.micro_batches >= 1, "pp_step_formula: pp ", s.pp,
           ", virtual_stages ", s.virtual_stages, " and micro_batches ", s.micro_batches,
           " must be >= 1");
  const int p = s.pp, v = s.virtual_stages;
  const int64_t m = s.micro_batches, n = s.B * s.T * s.C * 4, tied = s.tied_numel * 4;
  StepFormula f;
  f.title = str_cat("pipeline parallelism, pp ", p, v > 1 ? str_cat(" × ", v, " chunks") : "", ", ",
                    m, " micro-batches");
  f.rule = str_cat("2·(p·v − 1)·m·n = 2·(", p, "·", v, " − 1)·", m, "·", n,
                   " (n = B·T·C·4: an activation forward and its gradient back per micro-batch "
                   "and boundary) + 2·",
                   tied,
                   " (the tied wte's gradient, first ⇄ last stage) sent; all_reduce of the "
                   "norm's f64");
  if (p == 1) return f;
  for (int r = 0; r < p; ++r) {
    Traffic t;
    int64_t sends = 0;
    for (int c = 0; c < v; ++c) {
      if (!(r == p - 1 && c == v - 1)) sends += m * n;  // activations to the next stage
      if (!(r == 0 && c == 0)) sends += m * n;          // gradients to the previous one
    }
    if (r == 0 || r == p - 1) sends += tied;
    t[CommOp::Send].sent = sends;
    t[CommOp::AllReduce].sent = ring_all_reduce_bytes(1, 8, r, p).sent;
    f.total += t;
    f.per_rank.push_back(t);
  }
  return f;
}

StepFormula tp_in_stage_step_formula(const TpInStageShape& s) {
  const int64_t t = s.tp, G = s.micro_steps, L = s.blocks;
  const int64_t n = s.B * s.T * s.C * 4, bt = s.B * s.T * 4, ar = 2 * (t - 1);
  const int64_t per_micro = (s.recompute_blocks ? 6 : 4) * L + (s.first ? 1 : 0) + (s.last ? 1 : 0);
  StepFormula f;
  f.title = str_cat("tensor parallelism, tp ", t, " inside pipeline stage with ", L, " block(s)",
                    s.first ? ", the embedding" : "", s.last ? ", the head" : "", ", ", G,
                    " micro-step(s)");
  f.rule = str_cat("per micro-step 2L fwd + 2L bwd",
                   s.recompute_blocks ? " + 2L again (each block recomputed)" : "",
                   s.first ? " + 1 fwd (embedding)" : "",
                   s.last ? " + 1 bwd (tied head) + 3 of B·T·4 (cross-entropy)" : "",
                   " all_reduce of n = B·T·C·4 = ", n,
                   ", 2(t-1)/t·n each; per step all_reduce of the norm's f64");
  if (t > 1)
    f.total[CommOp::AllReduce].sent =
        G * per_micro * n * ar + (s.last ? G * 3 * bt * ar : 0) + 8 * ar;
  return f;
}

}  // namespace ms
