// `minispeed train`'s setup around the engine: the data it trains on, the
// output paths checked before any step runs, and the header rank 0 prints
// once the engine is built (the model, the mesh, each parallelism's line and
// the batch).
#pragma once
#include <cstdint>

#include "cli/flags.h"
#include "cli/train_config.h"
#include "nn/data.h"
#include "parallel/engine/engine.h"

namespace ms {

// Maps --data on every rank; an AgreedError when a rank cannot read it or it
// holds less than one batch (or, with --eval-every, its validation split does).
TokenData load_train_data(Communicator& world, const TrainConfig& c);

// Collective: rank 0 checks that --save-weights (and the loss curve beside
// it) and --timeline can be written and are not an input; every rank ends
// with its verdict.
void check_train_outputs(Communicator& world, const Flags& flags, const TrainConfig& c);

// Collective (under --ep the groups' report gathers); rank 0 prints.
void print_run_header(Communicator& world, Engine& engine, const TrainConfig& c,
                      int64_t serial_params);

}  // namespace ms
