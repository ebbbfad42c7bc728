#include "cli/train_memory_check.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm/runtime.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/memory.h"
#include "tensor/factory.h"

namespace ms {

namespace {

// Bytes this process may still allocate: MemAvailable, lowered by a cgroup
// memory limit when one is set (containers see the host's MemAvailable).
// Negative when unknown. `source` says where the number came from.
double available_memory(std::string& source) {
  double avail = -1;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kb = 0;
    meminfo >> kb;
    if (key == "MemAvailable:") {
      avail = kb * 1024;
      source = "MemAvailable in /proc/meminfo";
      break;
    }
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  auto read_number = [](const char* path) {
    std::ifstream in(path);
    double v = -1;
    if (!(in >> v)) v = -1;  // also "max": no limit
    return v;
  };
  for (auto [limit_path, usage_path] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    double limit = read_number(limit_path), usage = read_number(usage_path);
    if (limit > 0 && usage >= 0 && (avail < 0 || limit - usage < avail)) {
      avail = std::max(0.0, limit - usage);
      source = str_cat("the cgroup limit ", limit_path, " minus usage");
    }
  }
  return avail;
}

std::string bytes_text(double bytes) {
  char gib[64];
  std::snprintf(gib, sizeof gib, " (%.3g GiB)", bytes / (1024.0 * 1024 * 1024));
  if (bytes >= 9e18) {  // beyond format_bytes' int64
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3e", bytes);
    return buf + std::string(" bytes") + gib;
  }
  return format_bytes(bytes) + " bytes" + gib;
}

}  // namespace

void check_memory(Communicator& world, const TrainConfig& c, const GPTConfig& model) {
  const int64_t full_psi = gpt_parameter_count(model);
  // Under tp a rank holds its shards (tp_parameter_count) and ZeRO partitions
  // them over the dp ranks.
  const int64_t psi = c.tp > 1 ? tp_parameter_count(model, c.tp) : full_psi;
  const size_t k = c.optimizer == "adamw" ? 8 : (c.momentum != 0 ? 4 : 0);
  // ZeRO partitions over dp × cp (the cp ranks of a replica hold replicated parameters).
  MemoryEstimate e =
      estimate_memory(psi, static_cast<int>(c.dp * c.cp), static_cast<int>(c.zero_stage), k);
  // Stage 3 keeps the parameters outside the blocks (wte, wpe, ln_f) whole on
  // every rank (parallel/zero/memory.h); under tp wte is this rank's V/tp rows.
  double gathered = c.zero_stage == 3
                        ? 4.0 * static_cast<double>(
                                    (model.vocab_size / c.tp + model.block_size + 2) * model.n_embd)
                        : 0.0;
  // The --data file is memory-mapped (nn/data.cpp): its pages are the kernel's
  // page cache, shared by the ranks and reclaimable, so it is not counted.
  double per_rank = e.total() + gathered;
  // Every tp rank first builds the whole serial model, then cuts it.
  if (c.tp > 1) per_rank = std::max(per_rank, 4.0 * static_cast<double>(full_psi));
  std::string source;
  double avail = available_memory(source);

  // (per-rank bytes, ranks on this machine, available) from every rank, so all
  // ranks judge every machine alike and raise the same error.
  const int D = world.size();
  Tensor mine =
      from_vector({per_rank, static_cast<double>(ranks_on_this_node()), avail}, {3}, DType::F64);
  Tensor all = zeros({3 * D}, DType::F64);
  world.all_gather(mine, all);
  std::vector<double> v = all.to_vector();
  for (int r = 0; r < D; ++r) {
    double need = v[3 * r] * v[3 * r + 1], have = v[3 * r + 2];
    if (have < 0 || need <= have) continue;
    std::ostringstream msg;
    msg << "the model does not fit in memory"
        << (D > 1 ? str_cat(" on rank ", r, "'s machine") : std::string()) << ": "
        << static_cast<int64_t>(v[3 * r + 1]) << " rank(s) × " << bytes_text(v[3 * r]) << " = "
        << bytes_text(need) << " needed, " << bytes_text(have) << " available ("
        << (r == world.rank() ? source : std::string("MemAvailable or the cgroup limit"))
        << "). Counted per rank: model states for ZeRO stage " << c.zero_stage << " with "
        << c.optimizer << ", " << e.formula() << " with Ψ = " << format_bytes(double(psi))
        << " parameters = " << bytes_text(e.total());
    if (gathered > 0) msg << ", stage 3's gathered embeddings " << bytes_text(gathered);
    msg << "; activations are not counted. "
        << "Use a smaller model, --zero-stage 3 over more machines, or a bigger machine";
    throw AgreedError(msg.str());
  }
}

}  // namespace ms
