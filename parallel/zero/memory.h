// Memory accounting for data parallelism and ZeRO: what the paper's formula
// predicts per rank, what a rank actually holds, and a table of both.
//
// The formula (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
// Trillion Parameter Models", SC 2020, §3 and Figure 1). A model with Ψ
// parameters trained with Adam holds, per data-parallel rank:
//     parameters 2Ψ (fp16) + gradients 2Ψ (fp16) + optimizer state KΨ,
// K = 12 for mixed precision (fp32 master weights, momentum, variance). Each
// ZeRO stage divides one more of the three terms by the number of ranks D:
//     stage 0 (DDP)        2Ψ + 2Ψ + KΨ
//     stage 1 (P_os)       2Ψ + 2Ψ + KΨ/D
//     stage 2 (P_os+g)     2Ψ + (2+K)Ψ/D
//     stage 3 (P_os+g+p)   (2+2+K)Ψ/D
// In fp32 (minispeed's default) parameters and gradients take 4 bytes each
// and there is no separate master copy, so K is just the optimizer's own
// state: 8 for AdamW (m and v), 4 for SGD with momentum, 0 for plain SGD.
// With AdamW: 16Ψ,  8Ψ + 8Ψ/D,  4Ψ + 12Ψ/D,  16Ψ/D.
// With --bf16/--fp16 (mixed_precision.h) it is the paper's own accounting:
// 2-byte parameters, 2-byte gradients (4 when reduced in fp32), and K = 4 (the
// fp32 master weights) + the optimizer's state: 12 for AdamW, so
// 16Ψ,  4Ψ + 12Ψ/D,  2Ψ + 14Ψ/D,  16Ψ/D.
//
// What a real run adds on top (MemoryReport::expected_extra): padding (each
// flat group is rounded up to a multiple of D, so every rank owns an equal
// slice); for stage 3, the parameters outside the transformer blocks (wte, wpe,
// ln_f), which minispeed keeps gathered through the step; and, transiently
// (visible only in `peak`), gradient buckets in flight and stage 3's gathered
// layers. Activations are not model state and are not counted here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"

namespace ms {

// The ZeRO paper's per-rank model-state bytes for one stage.
struct MemoryEstimate {
  int64_t num_params = 0;                       // Ψ
  int dp = 1;                                   // D
  int stage = 0;                                // 0 (plain data parallelism) .. 3
  size_t optimizer_bytes_per_param = 8;         // K
  size_t param_bytes = 4, grad_bytes = 4;       // 4 in fp32; 2 for 16-bit (mixed precision)
  double params = 0, grads = 0, optimizer = 0;  // bytes per rank
  double total() const { return params + grads + optimizer; }
  std::string formula() const;  // e.g. "4Ψ + 4Ψ + 8Ψ/D"
};

// Stage 0..3 with param_bytes/grad_bytes per parameter (fp32: 4 and 4; mixed
// precision: 2 and 2) and K bytes of optimizer state per parameter (8 = AdamW
// in fp32; 12 = fp32 master + AdamW in mixed precision).
MemoryEstimate estimate_memory(int64_t num_params, int dp, int stage,
                               size_t optimizer_bytes_per_param = 8, size_t param_bytes = 4,
                               size_t grad_bytes = 4);

// What one rank holds, measured from the tensors themselves (each Storage
// counted once, however many views share it).
struct MemoryReport {
  int rank = 0;
  size_t params = 0;          // parameter storage: full buffers, shards, gathered layers
  size_t grads = 0;           // gradient storage: full gradients, gradient shards
  size_t optimizer = 0;       // optimizer state (Optimizer::state_bytes)
  size_t buffers = 0;         // communication buffers alive right now (buckets in flight)
  size_t peak = 0;            // the most params+grads+optimizer+buffers seen during training
  size_t layout = 0;          // params+grads+optimizer the stage holds by design (padded sizes)
  size_t released_alive = 0;  // stage 3: released block parameters still referenced; must be 0
  MemoryEstimate predicted;   // the formula for this stage, D and Ψ
  size_t total() const { return params + grads + optimizer + buffers; }
};

// Adds up the bytes of the storages behind sets of tensors, counting each
// Storage once: the first category that names a storage owns it.
class MemoryCounter {
 public:
  enum Category { Params, Grads, Buffers };
  void add(Category c, const Tensor& t);
  size_t bytes(Category c) const { return bytes_[c]; }
  size_t total() const { return bytes_[0] + bytes_[1] + bytes_[2]; }

 private:
  std::set<const void*> seen_;
  size_t bytes_[3] = {0, 0, 0};
};

// Collective over `comm`: every rank gets every rank's report, in rank order.
std::vector<MemoryReport> gather_memory_reports(Communicator& comm, const MemoryReport& mine);

// The per-rank table, measured beside predicted. `title` defaults to a line
// naming the stage, D, Ψ and K.
std::string format_memory_table(const std::vector<MemoryReport>& per_rank,
                                const std::string& title = "");

// The formula alone for every stage and each D (what `minispeed estimate-memory`
// prints): bytes per rank, and the saving against stage 0.
std::string format_memory_formula_table(int64_t num_params, const std::vector<int>& dps,
                                        size_t optimizer_bytes_per_param = 8);

// 1234567 -> "1,234,567".
std::string format_bytes(double bytes);

}  // namespace ms
