#include "cli/train_traffic.h"

#include "parallel/cp/cp_step_traffic.h"
#include "parallel/engine/pipeline.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_report.h"
#include "parallel/tp/traffic.h"

namespace ms {

namespace {

StepFormula cp_formula(const TrainConfig& c, const GPTConfig& cfg) {
  return cp_step_formula({.algo = c.cp_algo,
                          .B = c.B,
                          .T = c.T,
                          .Cl = cfg.n_embd / c.tp,
                          .n_layer = cfg.n_layer,
                          .micro_steps = c.accum,
                          .cp = static_cast<int>(c.cp),
                          .recompute_blocks = c.checkpoint_activations});
}

StepFormula tp_formula(Engine& engine, const TrainConfig& c, const GPTConfig& cfg) {
  TrainPipeline* pipeline = engine.pipeline();
  return pipeline ? pipeline->tp_traffic_formula(static_cast<int>(c.tp))
                  : tp_step_formula(
                        {.B = c.B,
                         .T = c.T / c.cp,  // a cp rank's tp group works on its positions
                         .C = cfg.n_embd,
                         .n_layer = cfg.n_layer,
                         .micro_steps = c.accum,
                         .tp = static_cast<int>(c.tp),
                         .sequence_parallel = c.sequence_parallel,
                         .recompute_blocks = c.checkpoint_activations,
                         .replicated_grad_numel = engine.zero_optimizer().replicated_grad_numel()});
}

}  // namespace

TrainTraffic::TrainTraffic(Engine& engine, const TrainConfig& c)
    : c_(c),
      formula_(engine.zero_optimizer().traffic_formula(c.accum)),
      traffic_(engine.mesh().dp_cp()),
      tp_traffic_(engine.mesh().tp()),
      pp_traffic_(engine.mesh().pp()),
      cp_traffic_(engine.mesh().cp()),
      ep_traffic_(engine.ep() ? engine.ep()->ep : engine.mesh().dp()),
      expert_traffic_(engine.ep() ? engine.ep()->expert_dp : engine.mesh().dp()),
      cp_formula_(cp_formula(c, engine.gpt().config())),
      pp_formula_(engine.pipeline() ? engine.pipeline()->traffic_formula() : StepFormula{}),
      tp_formula_(tp_formula(engine, c, engine.gpt().config())) {}

void TrainTraffic::begin_step() {
  traffic_.begin_step();
  tp_traffic_.begin_step();
  pp_traffic_.begin_step();
  cp_traffic_.begin_step();
  ep_traffic_.begin_step();
  expert_traffic_.begin_step();
}

void TrainTraffic::end_step() {
  traffic_.end_step();
  tp_traffic_.end_step();
  pp_traffic_.end_step();
  cp_traffic_.end_step();
  ep_traffic_.end_step();
  expert_traffic_.end_step();
}

std::string TrainTraffic::report(Engine& engine) const {
  const int64_t D = c_.dp, tp = c_.tp, pp = c_.pp, cp = c_.cp, accum = c_.accum;
  Mesh& mesh = engine.mesh();
  EpGroups* ep = engine.ep();
  return (D * cp > 1 ? traffic_report(mesh.dp_cp(), traffic_, formula_) : "") +
         (tp > 1 ? traffic_report(mesh.tp(), tp_traffic_, tp_formula_) : "") +
         (pp > 1 ? traffic_report(mesh.pp(), pp_traffic_, pp_formula_) : "") +
         (cp > 1 ? traffic_report(mesh.cp(), cp_traffic_, cp_formula_) : "") +
         (ep ? ep_traffic_report(*ep, ep_traffic_, engine.gpt()) : "") +
         (ep && ep->expert_dp.size() > 1
              ? traffic_report(ep->expert_dp, expert_traffic_,
                               [&] {
                                 StepFormula f = engine.expert_optimizer()->traffic_formula(accum);
                                 f.title =
                                     str_cat("the experts' ", f.title, " over the expert-dp group");
                                 return f;
                               }())
              : "");
}

}  // namespace ms
