// `minispeed estimate-memory`: the ZeRO paper's per-rank model-state memory
// for a model size, without training anything, and beside it DeepSpeed's own
// estimators (parallel/zero/memory_deepspeed.h).
#include <cstdio>
#include <optional>
#include <sstream>

#include "cli/agree.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "parallel/zero/memory.h"
#include "parallel/zero/memory_deepspeed.h"

namespace ms {

int estimate_memory_command(int argc, char** argv, Communicator& world) {
  Flags f(
      "minispeed estimate-memory",
      "Per-rank bytes of parameters, gradients and optimizer state (fp32) for each ZeRO stage,\n"
      "then DeepSpeed's estimate_zero2/zero3_model_states_mem_needs (mixed precision, offload\n"
      "options, per GPU and per CPU) for --gpus-per-node x --num-nodes.");
  f.add("params", "", "number of parameters Ψ (e.g. 124439808 for GPT-2 small); required");
  f.add("dp", "1,2,4,8", "data-parallel sizes D, comma-separated");
  f.add("zero-stage", "all", "0 | 1 | 2 | 3 | all");
  f.add("optimizer-bytes", "8", "optimizer state bytes per parameter K (AdamW 8, SGD+momentum 4)");
  f.add("largest-layer-params", "",
        "DeepSpeed's ZeRO-3 estimator: the most parameters one module holds (GPT-2: wte, "
        "38597376 for the 124M model)");
  f.add("gpus-per-node", "1", "DeepSpeed's estimators: num_gpus_per_node");
  f.add("num-nodes", "1", "DeepSpeed's estimators: num_nodes");
  f.add("additional-buffer-factor", "1.5", "DeepSpeed's estimators: additional_buffer_factor");
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
  DeepSpeedHardware hw;
  hw.gpus_per_node = f.integer("gpus-per-node");
  hw.nodes = f.integer("num-nodes");
  hw.additional_buffer_factor = f.real("additional-buffer-factor");
  MS_CHECK(hw.gpus_per_node >= 1 && hw.gpus_per_node <= 1 << 20,
           "--gpus-per-node must be in [1, 1048576], got ", hw.gpus_per_node);
  MS_CHECK(hw.nodes >= 1 && hw.nodes <= 1 << 20, "--num-nodes must be in [1, 1048576], got ",
           hw.nodes);
  MS_CHECK(hw.additional_buffer_factor > 0 && hw.additional_buffer_factor <= 1e6,
           "--additional-buffer-factor must be in (0, 1e6], got ", hw.additional_buffer_factor);
  // DeepSpeed's arithmetic is exact (and ours equal to it) while 18Ψ and
  // Ψ·4·GPUs stay below 2^53 (memory_deepspeed.h).
  constexpr int64_t kExact = int64_t{1} << 53;
  const bool deepspeed_exact =
      params <= kExact / 18 && params <= kExact / (4 * hw.gpus_per_node * hw.nodes);
  std::optional<int64_t> largest;
  if (!f.str("largest-layer-params").empty()) {
    largest = f.integer("largest-layer-params");
    MS_CHECK(*largest > 0 && *largest <= params, "--largest-layer-params must be in [1, --params = ",
             params, "], got ", *largest);
  }
  auto deepspeed = [&](int stage) {
    if (deepspeed_exact)
      std::printf("\n%s", format_deepspeed_estimates(params, largest, hw, stage).c_str());
    else
      std::printf("\n(DeepSpeed's estimators not shown: --params %lld is past the 2^53 range "
                  "where they are computed exactly)\n",
                  static_cast<long long>(params));
  };
  std::string stage = f.str("zero-stage");
  if (stage == "all") {
    std::fputs(format_memory_formula_table(params, dps, static_cast<size_t>(k)).c_str(), stdout);
    deepspeed(-1);
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
  if (s >= 2) deepspeed(static_cast<int>(s));
  return 0;
}

}  // namespace ms
