// `minispeed train`'s mixture-of-experts flags (nn/moe.h), their checks, and
// what the run prints about the routers: l_aux and dropped tokens on the step
// line, the per-expert load at the end.
#pragma once
#include <string>

#include "cli/flags.h"
#include "nn/gpt.h"

namespace ms {

struct TrainConfig;

void add_moe_flags(Flags& f);
// Fills c.model.moe from the flags; ms::Error naming the flag for a bad value
// or a layout MoE does not run under yet (--tp, --pp, ZeRO-3: expert
// parallelism --ep is planned next).
void read_moe_flags(const Flags& flags, TrainConfig& c);
// Parameters an MoE adds to the dense GPT's count (0 when off).
int64_t moe_extra_parameters(const GPTConfig& m);
// Expert parameters a token does not use: the E − k experts it is not routed
// to, in every MoE block (0 when off). Model FLOPs count the k it uses, as
// the MoE papers' "active parameters" do.
int64_t moe_idle_parameters(const GPTConfig& m);

// The start-of-run line: MoE blocks, capacity for `tokens` per micro-batch.
// `ep` > 1: the experts split over ep ranks (parallel/ep/).
std::string moe_run_line(const GPTConfig& m, int64_t tokens, int64_t dp, int64_t ep = 1);
// " | l_aux X | dropped Y%" for the training forwards since the last call
// (every rank calls it every step: it resets the step's counters); "" when
// the model has no MoE layer.
std::string moe_step_fields(GPT& model);
// The per-expert load table of the whole run (this rank's tokens).
std::string moe_load_table(GPT& model, int64_t dp);

}  // namespace ms
