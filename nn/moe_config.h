// The mixture-of-experts fields of a GPT (GPTConfig::moe), apart so the
// config header needs no module code.
#pragma once
#include <cstdint>
#include <string>

namespace ms {

struct MoEConfig {
  int64_t experts = 0;           // E; 0 = a dense model (--moe-experts)
  int64_t every = 2;             // blocks h.(K-1), h.(2K-1), ... are MoE (--moe-every)
  int64_t top_k = 1;             // 1 (Switch) or 2 (GShard) (--moe-top-k)
  double capacity_factor = 1.0;  // --capacity-factor
  int64_t min_capacity = 4;      // --moe-min-capacity (DeepSpeed MoE's default 4)
  bool drop_tokens = true;       // --moe-drop-tokens
  double aux_loss_coef = 0.01;   // --moe-aux-loss-coef

  bool enabled() const { return experts > 0; }
  // Megatron-DeepSpeed's expert_interval: 1-based layer numbers divisible by
  // K, so K = 2 makes every other block an MoE starting with the second.
  bool is_moe_block(int64_t i) const { return enabled() && (i + 1) % every == 0; }
  // Throws ms::Error naming the field ("config: moe.top_k ...") and the rule.
  void validate() const;
  std::string describe() const;
};

}  // namespace ms
