// The `minispeed` subcommands. Each returns the process exit code.
#pragma once
#include "parallel/comm/communicator.h"

namespace ms {

int train_command(int argc, char** argv, Communicator& world);
int sample_command(int argc, char** argv);
int estimate_memory_command(int argc, char** argv);

}  // namespace ms
