// describe(): the resolved ds_config as printed at the start of a run. Every
// value says whether the file gave it, DeepSpeed's default filled it in, or it
// was derived (and how), so the defaults that DeepSpeed's docs and code
// disagree on (steps_per_print, overlap_comm) are never a guess.
#include <iomanip>
#include <sstream>

#include "parallel/engine/config.h"
#include "tensor/error.h"

namespace ms {

namespace {

struct Printer {
  const DsConfig& c;
  std::ostringstream out;
  void line(const std::string& path, const std::string& value) {
    out << "  " << std::left << std::setw(47) << path << " " << value;
    auto d = c.derived.find(path);
    if (d != c.derived.end())
      out << "   (derived: " << d->second << ")";
    else if (!c.given.count(path))
      out << "   (default)";
    out << "\n";
  }
  template <typename T>
  void value(const std::string& path, const T& v) {
    line(path, str_cat(v));
  }
  // A line without a given/default/derived mark.
  void raw(const std::string& path, const std::string& text) {
    out << "  " << std::left << std::setw(47) << path << " " << text << "\n";
  }
  void flag(const std::string& path, bool v) { line(path, v ? "true" : "false"); }
};

}  // namespace

std::string describe(const DsConfig& c) {
  Printer p{c, {}};
  p.out << c.source << ", resolved for " << c.dp_world_size << " data-parallel rank"
        << (c.dp_world_size == 1 ? "" : "s");
  if (c.ranks > 0)
    p.out << " (" << c.ranks << " ranks / (tensor_parallel.size " << c.tensor_parallel.size
          << " × pipeline.stages " << c.pipeline.stages
          << (c.context_parallel.size > 1
                  ? str_cat(" × sequence_parallel_size ", c.context_parallel.size)
                  : std::string())
          << "))";
  p.out << ":\n";
  p.value("train_batch_size", c.train_batch_size);
  p.value("train_micro_batch_size_per_gpu", c.train_micro_batch_size_per_gpu);
  p.value("gradient_accumulation_steps", c.gradient_accumulation_steps);

  if (c.optimizer) {
    const DsOptimizerConfig& o = *c.optimizer;
    bool adamw = o.kind == DsOptimizerConfig::Kind::kAdamW;
    std::string runs = adamw ? "AdamW (decoupled weight decay)" : "SGD";
    if (adamw && o.type != "AdamW")
      runs +=
          str_cat("; \"", o.type, "\" means AdamW, as DeepSpeed's adam_w_mode defaults to true");
    p.line("optimizer.type", str_cat("\"", o.type, "\" → ", runs));
    p.value("optimizer.params.lr", o.lr);
    if (adamw) {
      p.line("optimizer.params.betas", str_cat("[", o.beta1, ", ", o.beta2, "]"));
      p.value("optimizer.params.eps", o.eps);
    } else {
      p.value("optimizer.params.momentum", o.momentum);
    }
    p.value("optimizer.params.weight_decay", o.weight_decay);
  } else {
    p.raw("optimizer", "none: supplied by the caller");
  }

  if (c.scheduler) {
    const engine::LRScheduleConfig& s = *c.scheduler;
    using K = engine::LRScheduleConfig::Kind;
    p.line("scheduler.type", engine::schedule_type_name(s.kind));
    if (s.kind != K::kWarmupLR) p.value("scheduler.params.total_num_steps", s.total_num_steps);
    p.value("scheduler.params.warmup_num_steps", s.warmup_num_steps);
    p.line("scheduler.params.warmup_type",
           s.warmup_type == engine::WarmupType::kLog ? "log" : "linear");
    if (s.kind == K::kWarmupCosineLR) {
      p.value("scheduler.params.warmup_min_ratio", s.warmup_min_ratio);
      p.value("scheduler.params.cos_min_ratio", s.cos_min_ratio);
    } else {
      p.value("scheduler.params.warmup_min_lr", s.warmup_min_lr);
      p.value("scheduler.params.warmup_max_lr", s.warmup_max_lr);
    }
  } else {
    p.raw("scheduler", "none: constant learning rate");
  }

  p.line("gradient_clipping", c.gradient_clipping == 0 ? "0 (off)" : str_cat(c.gradient_clipping));
  p.line("steps_per_print", c.steps_per_print ? str_cat(*c.steps_per_print)
                                              : "none (DeepSpeed's code default; its docs say 10)");
  p.flag("fp16.enabled", c.fp16.enabled);
  if (c.fp16.enabled) {
    p.line("fp16.loss_scale", c.fp16.loss_scale == 0 ? "0 (dynamic)" : str_cat(c.fp16.loss_scale));
    if (c.fp16.loss_scale == 0) {
      p.value("fp16.initial_scale_power", c.fp16.initial_scale_power);
      p.value("fp16.loss_scale_window", c.fp16.loss_scale_window);
      p.value("fp16.hysteresis", c.fp16.hysteresis);
      p.value("fp16.min_loss_scale", c.fp16.min_loss_scale);
    }
  }
  p.line(c.given.count("bfloat16.enabled") ? "bfloat16.enabled" : "bf16.enabled",
         c.bf16_enabled ? "true" : "false");
  p.value("zero_optimization.stage", c.zero_optimization.stage);
  p.value("zero_optimization.reduce_bucket_size", c.zero_optimization.reduce_bucket_size);
  p.value("zero_optimization.allgather_bucket_size", c.zero_optimization.allgather_bucket_size);
  p.flag("zero_optimization.overlap_comm", c.zero_optimization.overlap_comm);
  p.flag("activation_checkpointing.partition_activations",
         c.activation_checkpointing.partition_activations);
  p.line("activation_checkpointing.number_checkpoints",
         c.activation_checkpointing.number_checkpoints
             ? str_cat(*c.activation_checkpointing.number_checkpoints)
             : "none");
  p.value("tensor_parallel.size", c.tensor_parallel.size);
  p.flag("tensor_parallel.sequence_parallel", c.tensor_parallel.sequence_parallel);
  p.value("pipeline.stages", c.pipeline.stages);
  p.line("pipeline.schedule", c.pipeline.schedule);
  p.value("pipeline.virtual_stages", c.pipeline.virtual_stages);
  if (c.moe.num_experts > 0) {
    p.value("moe.num_experts", c.moe.num_experts);
    p.value("moe.expert_interval", c.moe.expert_interval);
    p.value("moe.k", c.moe.k);
    p.value("moe.capacity_factor", c.moe.capacity_factor);
    p.value("moe.min_capacity", c.moe.min_capacity);
    p.flag("moe.drop_tokens", c.moe.drop_tokens);
    p.value("moe.aux_loss_coef", c.moe.aux_loss_coef);
  }
  p.value("sequence_parallel_size", c.context_parallel.size);
  p.line("context_parallel.algo", c.context_parallel.algo);
  return p.out.str();
}

}  // namespace ms
