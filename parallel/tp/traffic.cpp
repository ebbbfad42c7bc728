// Megatron's per-step tp traffic (traffic.h).
#include "parallel/tp/traffic.h"

#include "tensor/error.h"

namespace ms {

StepFormula tp_step_formula(const TpTrafficShape& s) {
  MS_CHECK(s.tp >= 1 && s.micro_steps >= 1 && s.n_layer >= 1, "tp_step_formula: tp ", s.tp,
           ", micro_steps ", s.micro_steps, " and n_layer ", s.n_layer, " must be >= 1");
  const int64_t t = s.tp, G = s.micro_steps, L = s.n_layer;
  const int64_t n = s.B * s.T * s.C * 4, bt = s.B * s.T * 4;
  // Activation messages of n per micro-step: forward, backward, recompute.
  const int64_t per_micro = (2 * L + 1) + (2 * L + 1) + (s.recompute_blocks ? 2 * L : 0);
  StepFormula f;
  f.title = str_cat("tensor parallelism, tp ", t, s.sequence_parallel ? " + sequence parallel" : "",
                    ", ", G, " micro-step(s)");
  const int64_t ar = 2 * (t - 1), half = t - 1;   // summed over the t ranks, per byte
  int64_t all_reduce = G * 3 * bt * ar + 8 * ar;  // cross-entropy; the grad norm's f64
  std::string recompute = s.recompute_blocks ? " + 2L again (each block recomputed: --checkpoint-activations)" : "";
  if (s.sequence_parallel) {
    const int64_t regather = 2 * L + 1;  // each column layer's input, again in backward
    f.total[CommOp::AllGather].sent = G * (per_micro + regather) * n * half;
    f.total[CommOp::ReduceScatter].sent = G * per_micro * n * half;
    all_reduce += s.replicated_grad_numel * 4 * ar;
    f.rule = str_cat("per micro-step (2L+1) fwd + (2L+1) bwd", recompute,
                     " all_gather AND reduce_scatter of n = B·T·C·4 = ", n,
                     ", (t-1)/t·n each, + (2L+1) all_gather in bwd (the column layers' inputs "
                     "re-gathered); + 3 all_reduce of B·T·4 (cross-entropy); per step "
                     "all_reduce of the ",
                     s.replicated_grad_numel, " replicated grad elements (SP) and the norm's f64");
  } else {
    all_reduce += G * per_micro * n * ar;
    f.rule = str_cat("per micro-step (2L+1) fwd + (2L+1) bwd", recompute,
                     " all_reduce of n = B·T·C·4 = ", n,
                     ", 2(t-1)/t·n each; + 3 all_reduce of B·T·4 (cross-entropy); per step "
                     "all_reduce of the norm's f64");
  }
  f.total[CommOp::AllReduce].sent = all_reduce;
  if (t == 1) f.total = Traffic();
  return f;
}

}  // namespace ms
