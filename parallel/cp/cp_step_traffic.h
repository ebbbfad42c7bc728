// What the cp group of one replica sends per training step, for the traffic
// table of `minispeed train --cp` (parallel/comm/ledger.h: measured beside the
// formula, as parallel/tp/traffic.h does for tp). Only attention talks on cp:
// per micro-step every layer runs the algorithm's forward exchange and its
// backward exchange (parallel/cp/traffic.h, cp_traffic_formula), and a block
// recomputed under --checkpoint-activations runs its forward exchange again.
// The all-gather reference: an all_gather of the (B, T, 3·Cl) q|k|v forward
// and a reduce_scatter of its gradient backward, (C−1)/C of that buffer each.
// Totals are summed over the C ranks (every cp rank sends the same bytes).
#pragma once
#include <cstdint>
#include <string>

#include "parallel/comm/ledger.h"

namespace ms {

struct CpStepShape {
  std::string algo = "ulysses";  // ulysses | ring | zigzag | allgather
  int64_t B = 0, T = 0, Cl = 0, n_layer = 0, micro_steps = 1;  // Cl = n_embd / tp
  int cp = 1;
  bool recompute_blocks = false;  // --checkpoint-activations
};

StepFormula cp_step_formula(const CpStepShape& s);

}  // namespace ms
