#include "bench/parallel_step/common.h"

#include <mpi.h>

#include <cstdio>
#include <string>

#include "parallel/zero/memory.h"  // format_bytes: 1,234,567
#include "tensor/factory.h"

namespace ms::parallel_step {

Tensor rows(const std::vector<int32_t>& all, int64_t first, int64_t n, int64_t T) {
  return from_vector(std::vector<int32_t>(all.begin() + first * T, all.begin() + (first + n) * T),
                     {n, T});
}

double max_over_ranks(double v) {
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

void print_row(const Setup& s, const Result& r, double base_ms) {
  char time[48], ratio[16];
  std::snprintf(time, sizeof time, "%.1f (%.1f..%.1f)", r.median_ms, r.best_ms, r.worst_ms);
  std::snprintf(ratio, sizeof ratio, "%.2fx", r.median_ms / base_ms);
  std::string sent = format_bytes(r.per_step.sent);
  if (r.sent_min != r.sent_max) sent += " (max " + format_bytes(r.sent_max) + ")";
  std::printf("%-26s %8s %26s %8.1f %9s %10lld %18s %11.6f\n", s.name,
              (std::to_string(s.threads) + (s.alone ? "" : "×2")).c_str(), time, r.cpu_ms, ratio,
              (long long)r.per_step.calls, sent.c_str(), r.first_loss);
}

}  // namespace ms::parallel_step
