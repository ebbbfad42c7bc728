// What a pipeline's pp group sends per training step (Narayanan et al. 2021
// §3.2: b·s·h per micro-batch between consecutive stages), for the traffic
// table of `minispeed train --pp` (parallel/comm/ledger.h: measured beside
// the formula). n = B·T·C·4 bytes of one (B, T, C) fp32 activation.
//
// Per step of m micro-batches, over the S − 1 = p·v − 1 boundaries between
// virtual stages: m activations of n forward and m gradients of n back across
// each, so 2(p·v − 1)·m·n sent in all; interleaving (v > 1) multiplies the
// boundaries, hence the traffic, by about v (the paper's "the amount of
// communication also increases by v"). Rank r sends m·n per chunk that is not
// the last virtual stage (activations) and m·n per chunk that is not the
// first (gradients). Plus: the tied embedding's gradient, V·C·4 bytes (a tp
// rank's V/t rows) sent each way between the first and last stage; the
// gradient norm's f64, all-reduced over pp.
#pragma once
#include <cstdint>

#include "parallel/comm/ledger.h"

namespace ms {

struct PpTrafficShape {
  int64_t B = 0, T = 0, C = 0, micro_batches = 1;
  int pp = 1, virtual_stages = 1;
  int64_t tied_numel = 0;  // this rank's wte elements (V·C, or V/t·C under tp)
};

StepFormula pp_step_formula(const PpTrafficShape& s);

// The tp group inside one pipeline stage: Megatron's count of
// parallel/tp/traffic.h over the stage's own blocks only, the embedding's
// all-reduce on the first stage only, the head's and the cross-entropy's
// (3 of B·T·4) on the last stage only; per step the norm's f64. Without
// sequence parallelism (not supported with --pp yet).
struct TpInStageShape {
  int64_t B = 0, T = 0, C = 0, blocks = 0, micro_steps = 1;
  int tp = 1;
  bool first = false, last = false;
  bool recompute_blocks = false;  // --checkpoint-activations: 2L more in backward
};
StepFormula tp_in_stage_step_formula(const TpInStageShape& s);

}  // namespace ms
