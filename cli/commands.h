// The `minispeed` subcommands. Each returns the process exit code.
#pragma once
#include "parallel/comm/communicator.h"

namespace ms {

int train_command(int argc, char** argv, Communicator& world);
// Under mpirun every rank runs the command; each first checks that all ranks
// were given the same command and flags (cli/agree.h).
int sample_command(int argc, char** argv, Communicator& world);
int estimate_memory_command(int argc, char** argv, Communicator& world);
// One process only (more ranks: an error); pipeline schedules simulated.
int schedule_command(int argc, char** argv, Communicator& world);
// One process: a checkpoint of any layout -> one Hugging Face GPT-2 file.
int consolidate_command(int argc, char** argv, Communicator& world);

}  // namespace ms
