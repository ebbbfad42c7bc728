// The third table of bench_parallel_step: mixture of experts at ep 1 and ep 2
// against the dense model at dp 2, the same global batch.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/comm/communicator.h"

namespace ms::parallel_step {

// Collective over the world; rank 0 prints the table and what it says.
void moe_table(Communicator& world, int steps, int warmup, const std::vector<int32_t>& xs,
               const std::vector<int32_t>& ys);

}  // namespace ms::parallel_step
