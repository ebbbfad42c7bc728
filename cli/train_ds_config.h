// `minispeed train --config ds_config.json`: the file's keys set what the
// flags set. A flag given beside a key it contradicts is an error naming both
// ("--zero-stage 2 contradicts zero_optimization.stage 3 in x.json"); a flag
// that agrees, or one for something the file does not give, is fine.
#pragma once
#include <optional>

#include "cli/flags.h"
#include "cli/train_config.h"
#include "parallel/engine/config.h"

namespace ms {

// Reads --config (if given) for a job of `ranks` ranks and hands its values
// to `flags` (Flags::set), so read_train_config validates one set of values.
// Flags for the layout and the batch the file leaves out (--tp, --pp,
// --batch-size, --grad-accum, ...) join the file before DeepSpeed's batch
// derivation, so train_batch_size = micro × gas × dp is checked with them.
// Pure: the same flags and file give the same outcome on every rank.
std::optional<DsConfig> merge_ds_config(Flags& flags, int ranks);

// The engine's config for the run: the file's with the flags' values filled
// in, or (without --config) the one the flags describe.
DsConfig engine_config(const TrainConfig& c, const std::optional<DsConfig>& file);

}  // namespace ms
