// The second table of bench_parallel_step: context parallelism at T = 512
// (ulysses, ring, zigzag) against dp 2 on the same 2×512 tokens. Its rows are
// Runner setups printed with print_row; these are its heading and what it says.
#pragma once
#include "bench/parallel_step/common.h"

namespace ms::parallel_step {

void print_cp_heading();

// What the cp rows say, against dp 2 at the same T (`ldp`).
void print_cp_finding(const Result& ldp, const Result& uly, const Result& ring, const Result& zz);

}  // namespace ms::parallel_step
