// `minispeed estimate-memory`: the ZeRO paper's per-rank model-state memory
// for a model size, without training anything.
#include <cstdio>
#include <sstream>

#include "cli/agree.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "parallel/zero/memory.h"

namespace ms {

int estimate_memory_command(int argc, char** argv, Communicator& world) {
  Flags f(
      "minispeed estimate-memory",
      "Per-rank bytes of parameters, gradients and optimizer state (fp32) for each ZeRO stage.");
  f.add("params", "", "number of parameters Ψ (e.g. 124439808 for GPT-2 small); required");
  f.add("dp", "1,2,4,8", "data-parallel sizes D, comma-separated");
  f.add("zero-stage", "all", "0 | 1 | 2 | 3 | all");
  f.add("optimizer-bytes", "8", "optimizer state bytes per parameter K (AdamW 8, SGD+momentum 4)");
  if (!f.parse(argc, argv, 2)) return 0;
  agree_on_flags(world, "estimate-memory", f);
  MS_CHECK(!f.str("params").empty(), "minispeed estimate-memory: --params N is required");
  int64_t params = f.integer("params");
  MS_CHECK(params > 0, "--params must be positive, got ", params);
  int64_t k = f.integer("optimizer-bytes");
  MS_CHECK(k >= 0, "--optimizer-bytes must be >= 0, got ", k);
  // Stage 0 holds the most, (4 + 4 + K)Ψ bytes. The formula works in double
  // and prints through int64, so keep that within 2^62: near 2^63 the double
  // rounds up past INT64_MAX and the count printed wraps negative.
  constexpr int64_t kMaxBytes = int64_t{1} << 62;
  MS_CHECK(k <= kMaxBytes - 8, "--optimizer-bytes ", k, " is too large (at most ",
           kMaxBytes - 8, ")");
  const int64_t max_params = kMaxBytes / (8 + k);
  MS_CHECK(params <= max_params, "--params ", params, " is too large: its model states, (4 + 4 + ",
           k, ")Ψ bytes, overflow a 64-bit byte count; at most ", max_params,
           " with --optimizer-bytes ", k);
  std::vector<int> dps;
  std::stringstream list(f.str("dp"));
  for (std::string item; std::getline(list, item, ',');) {
    int d = 0;
    try {
      d = std::stoi(item);
    } catch (const std::exception&) {
    }
    MS_CHECK(d > 0, "--dp: '", item,
             "' is not a positive integer (give e.g. --dp 2 or --dp 1,2,4)");
    dps.push_back(d);
  }
  std::string stage = f.str("zero-stage");
  if (stage == "all") {
    std::fputs(format_memory_formula_table(params, dps, static_cast<size_t>(k)).c_str(), stdout);
    return 0;
  }
  int64_t s = f.integer("zero-stage");
  MS_CHECK(s >= 0 && s <= 3, "--zero-stage must be 0, 1, 2, 3 or all, got ", s);
  for (int d : dps) {
    MemoryEstimate e = estimate_memory(params, d, static_cast<int>(s), static_cast<size_t>(k));
    std::printf(
        "stage %lld, D = %d: %s = params %s + grads %s + optimizer %s = %s bytes per rank\n",
        static_cast<long long>(s), d, e.formula().c_str(), format_bytes(e.params).c_str(),
        format_bytes(e.grads).c_str(), format_bytes(e.optimizer).c_str(),
        format_bytes(e.total()).c_str());
  }
  return 0;
}

}  // namespace ms
