// The serial GPT `minispeed train` starts from: fresh from the shape flags,
// or shaped by --init-from's weights (whose shape the typed flags must
// match). Every rank builds the same one; ms::initialize then cuts it for
// the run's tensor and pipeline parallelism (parallel/engine/engine.h).
#pragma once
#include <memory>

#include "cli/flags.h"
#include "cli/train_config.h"
#include "nn/gpt.h"
#include "parallel/comm/communicator.h"

namespace ms {

// Collective over `world` (the memory check). Errors name the flag and are
// the same on every rank.
std::shared_ptr<GPT> build_train_model(Communicator& world, const Flags& flags,
                                       const TrainConfig& c);

}  // namespace ms
