#include "bench/parallel_step/cp_table.h"

#include <cstdio>

#include "parallel/zero/memory.h"  // format_bytes: 1,234,567

namespace ms::parallel_step {

void print_cp_heading() {
  std::printf("\ncontext parallelism: GPT at T %lld, global batch %lld×%lld tokens; vs dp 2\n",
              (long long)kLongT, (long long)kLongB, (long long)kLongT);
}

void print_cp_finding(const Result& ldp, const Result& uly, const Result& ring, const Result& zz) {
  auto tok_s = [](const Result& r) { return double(kLongB * kLongT) / (r.median_ms / 1e3); };
  std::printf(
      "- Context parallelism at T %lld (the \"vs\" column is against dp 2 here): tokens/s "
      "dp 2 %.0f, cp 2 ulysses %.0f, ring %.0f, zigzag %.0f. Bytes per step: dp 2 %s (the "
      "gradients once), ulysses %s, ring %s, zigzag %s — cp adds its attention exchange "
      "(every layer, forward and backward) to the same gradient all-reduce, so on one "
      "machine it only pays off when a sequence's activations (here B·n_head·T² scores) no "
      "longer fit one rank.\n",
      (long long)kLongT, tok_s(ldp), tok_s(uly), tok_s(ring), tok_s(zz),
      format_bytes(ldp.per_step.sent).c_str(), format_bytes(uly.per_step.sent).c_str(),
      format_bytes(ring.per_step.sent).c_str(), format_bytes(zz.per_step.sent).c_str());
}

}  // namespace ms::parallel_step
