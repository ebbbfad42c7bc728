// `minispeed train`'s check of the model's memory against the machine's
// (cli/train_model.cpp calls it before it allocates a fresh model), so a run
// too big for the machine fails in a second with a message instead of being
// OOM-killed minutes later.
#pragma once
#include "cli/train_config.h"
#include "nn/gpt.h"
#include "parallel/comm/communicator.h"

namespace ms {

// Collective. Refuses (with an AgreedError on every rank) when the ranks on
// some machine would need more memory than it has available: per rank, the
// ZeRO paper's model states for this stage and optimizer over the dp (× cp) ranks
// (parallel/zero/memory.h, within 0.3% of measured; under --tp for this
// rank's shards, and at least the whole serial model every rank builds
// first); times the ranks on that machine; against MemAvailable (and the
// cgroup limit, if any). Activations and the memory-mapped --data file are
// not counted, so passing does not promise the run fits.
void check_memory(Communicator& world, const TrainConfig& c, const GPTConfig& model);

}  // namespace ms
