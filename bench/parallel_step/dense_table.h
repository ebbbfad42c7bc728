// The first table of bench_parallel_step: one process (1 and 2 threads), dp 2
// under ZeRO 0 and 3, tp 2 with and without sequence parallelism. Its rows
// are Runner setups printed with print_row; these print its heading, the
// ZeRO-3/DDP ratio and what the table says.
#pragma once
#include <cstdint>
#include <vector>

#include "bench/parallel_step/common.h"
#include "nn/gpt.h"
#include "parallel/comm/communicator.h"

namespace ms::parallel_step {

void print_dense_header(const GPTConfig& cfg, int64_t n_params, int usable, int warmup, int steps);

// `dp`, `z3`: the dp 2 rows under ZeRO 0 and ZeRO 3, taken in the same rounds.
void print_zero3_vs_ddp(const Result& dp, const Result& z3);

// Collective: the best of 20 all-reduces of a (B, T, C) activation, in ms.
double activation_allreduce_ms(Communicator& world);

// `results`: the six dense rows first, in the order bench_parallel_step.cpp
// lists their setups.
void print_dense_findings(const std::vector<Result>& results, int64_t n_params,
                          double allreduce_ms);

}  // namespace ms::parallel_step
