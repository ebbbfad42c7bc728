// ds_config.json: DeepSpeed's configuration file, the subset minispeed runs,
// with DeepSpeed's key names, defaults (0.19.6) and batch-size derivation
// (deepspeed/runtime/config.py::DeepSpeedConfig._set_batch_related_parameters),
// plus minispeed's own tensor_parallel and pipeline sections.
//
// Stricter than DeepSpeed on purpose (docs/architecture.md, "Errors"): an
// unknown or misspelled key at any depth, a duplicate key, a wrong type or an
// out-of-range value is an ms::Error naming the key's path, the value and
// what would be valid, where DeepSpeed ignores top-level typos (DeepSpeed#653)
// and reports bad batch sizes without saying where the world size came from.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "parallel/engine/lr_schedules.h"

namespace ms {

struct DsOptimizerConfig {
  // As written: "Adam", "AdamW" (any case, as DeepSpeed lower-cases its own
  // optimizers) or "SGD" (exact, as a torch.optim class name).
  std::string type = "AdamW";
  // What runs. DeepSpeed's "Adam" is AdamW unless params.adam_w_mode is false
  // (ADAM_W_MODE_DEFAULT = True): decoupled weight decay either way here.
  enum class Kind { kAdamW, kSGD } kind = Kind::kAdamW;
  // Defaults of the optimizer DeepSpeed builds: FusedAdam (lr 1e-3, betas
  // (0.9, 0.999), eps 1e-8, weight_decay 0) or torch.optim.SGD (lr 1e-3,
  // momentum 0, weight_decay 0).
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double momentum = 0.0;
};

struct DsFp16Config {
  bool enabled = false;
  double loss_scale = 0.0;           // 0 = dynamic loss scaling, > 0 = this static scale
  int64_t initial_scale_power = 16;  // dynamic: start at 2^16
  int64_t loss_scale_window = 1000;  // clean steps before the scale doubles
  int64_t hysteresis = 2;            // overflows tolerated before halving
  double min_loss_scale = 1.0;
};

struct DsZeroConfig {
  int64_t stage = 0;
  int64_t reduce_bucket_size = 500000000;     // elements (5e8)
  int64_t allgather_bucket_size = 500000000;  // elements (5e8)
  bool overlap_comm = false;  // DeepSpeed's None resolves to stage == 3 (its docs say false)
  // offload_optimizer.device "cpu": ZeRO-Offload (fp32 masters and optimizer
  // state on the CPU); "none" or absent: off. "nvme" (ZeRO-Infinity) is refused.
  bool offload_optimizer = false;
};

struct DsActivationCheckpointingConfig {
  // The section is present. DeepSpeed's section only configures and the
  // model calls deepspeed.checkpointing.checkpoint itself; minispeed owns the
  // model, so the section (or train --checkpoint-activations) is the switch:
  // the first number_checkpoints blocks (all when absent) recompute in backward.
  bool enabled = false;
  bool partition_activations = false;
  std::optional<int64_t> number_checkpoints;  // None: every layer's boundary
};

// minispeed's own: Megatron tensor (and sequence) parallelism.
struct DsTensorParallelConfig {
  int64_t size = 1;
  bool sequence_parallel = false;
};

// minispeed's own: mixture of experts (nn/moe.h). DeepSpeed configures MoE
// in model code (deepspeed.moe.layer.MoE(num_experts, k, capacity_factor,
// min_capacity, drop_tokens)); this section names the same arguments, plus
// Megatron-DeepSpeed's expert_interval and the loss coefficient
// (configs/README.md).
struct DsMoEConfig {
  int64_t num_experts = 0;  // 0 = dense
  int64_t expert_interval = 2;
  int64_t k = 1;
  double capacity_factor = 1.0;
  int64_t min_capacity = 4;
  bool drop_tokens = true;
  double aux_loss_coef = 0.01;
  // Expert parallelism: the experts split over ep_size dp ranks
  // (parallel/ep/; DeepSpeed passes ep_size to the MoE layer's constructor).
  int64_t ep_size = 1;
};

// Context parallelism (parallel/cp/cp_gpt.h): `size` is DeepSpeed's top-level
// sequence_parallel_size (the Ulysses degree in DeepSpeed's ds_config); the
// algorithm is minispeed's own section "context_parallel": {"algo": ...}
// (Megatron's cp_comm_type: a2a = ulysses, p2p = ring / zigzag, all_gather).
struct DsContextParallelConfig {
  int64_t size = 1;
  std::string algo = "ulysses";  // "ulysses" | "ring" | "zigzag" | "allgather"
};

// minispeed's own: the pipeline (parallel/pp/schedule.h's schedule names).
struct DsPipelineConfig {
  int64_t stages = 1;
  std::string schedule = "1f1b";  // "gpipe" | "1f1b" | "interleaved"
  int64_t virtual_stages = 1;     // model chunks per rank; > 1 only with "interleaved"
};

struct DsConfig {
  // The batch triple, all resolved: train_batch_size =
  // train_micro_batch_size_per_gpu × gradient_accumulation_steps × dp_world_size.
  int64_t train_batch_size = 0;
  int64_t train_micro_batch_size_per_gpu = 0;
  int64_t gradient_accumulation_steps = 0;
  int64_t dp_world_size = 1;  // the data-parallel ranks the triple was resolved for
  int64_t ranks = 0;          // the job's ranks when parsed *_for_ranks, else 0

  std::optional<DsOptimizerConfig> optimizer;         // absent: the caller supplies one
  std::optional<engine::LRScheduleConfig> scheduler;  // absent: constant lr
  double gradient_clipping = 1.0;                     // 0 = off; DeepSpeed's default since PR #8068
  std::optional<int64_t> steps_per_print;             // DeepSpeed's None (its docs still say 10)
  DsFp16Config fp16;
  bool bf16_enabled = false;
  // The dtype gradients are reduced in: "" (the model's: fp16 or bf16),
  // "fp32", "fp16", "bf16" (DeepSpeed's top-level communication_data_type).
  std::string communication_data_type;
  DsZeroConfig zero_optimization;
  DsActivationCheckpointingConfig activation_checkpointing;
  DsTensorParallelConfig tensor_parallel;
  DsPipelineConfig pipeline;
  DsMoEConfig moe;
  DsContextParallelConfig context_parallel;
  // minispeed's own top-level "device": "cpu" | "cuda" | "sim" ("" = absent:
  // --device decides). DeepSpeed has no such key (its accelerator decides).
  std::string device;

  // Provenance for describe(): the paths of the keys the file gave, and the
  // values the parser derived (path → how, e.g. "= 64 // 8 // 2").
  std::set<std::string> given;
  std::map<std::string, std::string> derived;
  std::string source = "ds_config";  // the file, for messages
};

// Parses and validates a ds_config for `dp_world_size` data-parallel ranks
// (the world divided by tensor_parallel.size × pipeline.stages ×
// sequence_parallel_size: the caller
// knows the world). Throws ms::Error on any problem. Pure: the same text gives
// the same result on every rank.
DsConfig parse_ds_config(const std::string& json_text, int dp_world_size);
// The same, reading the file at `path` (named in every message).
DsConfig load_ds_config(const std::string& path, int dp_world_size);
// For a job of `ranks` ranks: the data-parallel size is derived from the
// file's own tensor_parallel.size, pipeline.stages and sequence_parallel_size (an error when they do
// not divide the ranks), which is what a launcher knows.
// `source` names the text in messages (a file's path).
DsConfig parse_ds_config_for_ranks(const std::string& json_text, int ranks,
                                   const std::string& source = "ds_config");
DsConfig load_ds_config_for_ranks(const std::string& path, int ranks);
// The file's text, or an ms::Error naming the path (missing, not a regular
// file, unreadable).
std::string read_ds_config_file(const std::string& path);

// The resolved configuration, one key per line, each value marked as given,
// default or derived (with how), for printing at the start of a run.
std::string describe(const DsConfig& c);

}  // namespace ms
