// `minispeed train`'s communication meters: one StepTraffic per group that
// talks during a step (ZeRO on dp × cp, tp, pp, cp, and under --ep the
// all-to-alls on the ep group and the experts' ZeRO on the expert-dp group),
// each with the formula its table prints beside the ledger's bytes.
#pragma once
#include <string>

#include "cli/train_config.h"
#include "parallel/comm/ledger.h"
#include "parallel/engine/engine.h"

namespace ms {

class TrainTraffic {
 public:
  // Built after setup: what came before (the parameter broadcast) is not metered.
  TrainTraffic(Engine& engine, const TrainConfig& c);
  void begin_step();
  void end_step();
  // Collective over every metered group: the tables world rank 0 prints
  // (it is rank 0 of its dp group and of its tp group, so it gets both).
  std::string report(Engine& engine) const;

 private:
  const TrainConfig& c_;
  const StepFormula formula_;
  // ZeRO talks on the dp group, tp on the tp group: one meter and one formula
  // each. Under cp ZeRO talks on dp × cp (the same group as dp when cp = 1).
  StepTraffic traffic_, tp_traffic_, pp_traffic_, cp_traffic_;
  // Expert parallelism: the all-to-alls on the ep group, the experts' ZeRO on
  // the expert-dp group (the mesh's groups when off: unused).
  StepTraffic ep_traffic_, expert_traffic_;
  const StepFormula cp_formula_, pp_formula_, tp_formula_;
};

}  // namespace ms
