// The per-step cp traffic formula (cp_step_traffic.h).
#include "parallel/cp/cp_step_traffic.h"

#include "parallel/cp/cp_gather_attention.h"
#include "parallel/cp/traffic.h"
#include "tensor/error.h"

namespace ms {

StepFormula cp_step_formula(const CpStepShape& s) {
  MS_CHECK(s.cp >= 1 && s.micro_steps >= 1 && s.n_layer >= 1, "cp_step_formula: cp ", s.cp,
           ", micro_steps ", s.micro_steps, " and n_layer ", s.n_layer, " must be >= 1");
  StepFormula f;
  f.title = str_cat("context parallelism, cp ", s.cp, " (", s.algo, "), ", s.micro_steps,
                    " micro-step(s)");
  if (s.cp == 1) return f;
  const int64_t C = s.cp, G = s.micro_steps, L = s.n_layer;
  const int64_t forwards = s.recompute_blocks ? 2 : 1;  // a recomputed block exchanges again
  const std::string recompute =
      s.recompute_blocks ? " (forward twice: --checkpoint-activations recomputes it)" : "";
  if (s.algo == "allgather") {
    const int64_t half = cp_gather_attention_bytes(s.B, s.T, s.Cl, s.cp) / 2;  // per rank
    f.total[CommOp::AllGather].sent = G * L * forwards * half * C;
    f.total[CommOp::ReduceScatter].sent = G * L * half * C;
    f.rule = str_cat("per micro-step and layer: all_gather of q|k|v forward", recompute,
                     ", reduce_scatter of its gradient backward, (C−1)/C·B·T·3·Cl·4 = ", half,
                     " B per rank each; × L ", L, " × ", G, " micro-step(s) × ", C, " ranks");
    return f;
  }
  const CpLayerTraffic layer = cp_traffic_formula(parse_cp_algo(s.algo), s.B, s.T, s.Cl, s.cp);
  f.total[layer.op].sent = G * L * (forwards * layer.forward + layer.backward) * C;
  f.rule = str_cat("per micro-step and layer: ", layer.rule, recompute, "; × L ", L, " × ", G,
                   " micro-step(s) × ", C, " ranks");
  return f;
}

}  // namespace ms
