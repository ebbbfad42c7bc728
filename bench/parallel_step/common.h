// What every table of bench_parallel_step shares: the model's size, a setup
// and its measured result, and the row format of the dense and cp tables.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel/comm/ledger.h"
#include "tensor/tensor.h"

namespace ms::parallel_step {

constexpr int64_t kL = 4, kH = 4, kC = 256, kT = 128, kV = 256, kB = 8;
constexpr int64_t kLongT = 512, kLongB = 2;  // the cp table: the same 1,024 tokens, longer rows

struct Setup {
  const char* name;
  int threads;  // per rank
  bool alone;   // rank 0 only
  int dp, tp;
  bool sp;
  int zero_stage = 0;
  int cp = 1;                    // context-parallel ranks (the two ranks when 2)
  const char* algo = "ulysses";  // --cp-algo
  int64_t T = kT, B = kB;        // sequence length and global batch
};

struct Result {
  double median_ms = 0, best_ms = 0, worst_ms = 0, cpu_ms = 0, first_loss = NAN;
  std::vector<double> round_ms, round_cpu_ms;  // per timed round, in round order
  OpTraffic per_step;                          // this rank's, summed over its dp and tp groups
  int64_t sent_min = 0, sent_max = 0;
};

// Rows [first, first + n) of a (B, T) token batch.
Tensor rows(const std::vector<int32_t>& all, int64_t first, int64_t n, int64_t T);

double max_over_ranks(double v);

// One line of the dense or the cp table; `base_ms` is the row its "vs" column
// divides by.
void print_row(const Setup& s, const Result& r, double base_ms);

}  // namespace ms::parallel_step
