// What `minispeed train` reports after its last step: the check that some
// step updated the weights, the per-rank memory tables (ZeRO's, the
// device's, ZeRO-Offload's transfers, tp's, cp's and the experts'), the
// traffic tables, the pipeline's measured step and the MoE load.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cli/train_config.h"
#include "cli/train_traffic.h"
#include "parallel/engine/engine.h"
#include "parallel/zero/memory.h"

namespace ms {

// Every one of the `steps_run` steps skipped on overflow: the weights never
// moved, so exiting 0 would pass an untrained model off as trained. An
// AgreedError on every rank (skipped() is agreed over every mesh axis).
void check_some_step_updated(const TrainConfig& c, const ZeroOptimizer& zero, int64_t steps_run,
                             int64_t skipped_steps);

struct EndOfRunReport {
  std::vector<MemoryReport> memory;  // ZeroOptimizer's, per rank
  std::string cp_memory, traffic, ep_memory;
  std::string device_memory, tp_memory, pipeline;  // filled in by the caller
};

// Collective (the memory gathers, cp's measured attention call, the traffic
// tables), in this order on every rank; rank 0 gets the tables.
EndOfRunReport gather_end_of_run_report(Communicator& world, Engine& engine, const TrainConfig& c,
                                        const TrainTraffic& traffic);

// The device's memory line and, under ZeRO-Offload, the bytes each step
// moved between the cpu and the device (since `before`, over `steps_run`).
std::string device_memory_lines(const TrainConfig& c, const ZeroOptimizer& zero, int rank,
                                const MasterWeights::Transfers& before, int64_t steps_run);

// Rank 0: the tables and the notes that say how to read them.
void print_end_of_run_report(const TrainConfig& c, Engine& engine, const EndOfRunReport& r,
                             int64_t serial_params);

}  // namespace ms
