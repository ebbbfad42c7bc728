#include "cli/train_ds_config.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <tuple>
#include <vector>

#include "parallel/engine/json_reader.h"
#include "tensor/error.h"

namespace ms {

namespace {

std::string num(double v) {
  return exact_str(v);
}
std::string num(int64_t v) {
  return std::to_string(v);
}

// One config key and the flag that sets the same thing. `value` is the
// config's value written as the flag would be; `owned`: when the file leaves
// the key out, DeepSpeed's default (the parsed config's value) still applies
// unless the flag is given (the key's section is the file's).
struct Key {
  std::string path, flag;
  std::function<std::string(const DsConfig&)> value;
  bool owned = true;
};

std::vector<Key> keys(const DsConfig& c) {
  std::vector<Key> k = {
      {"train_micro_batch_size_per_gpu", "batch-size",
       [](const DsConfig& d) { return num(d.train_micro_batch_size_per_gpu); }},
      {"gradient_accumulation_steps", "grad-accum",
       [](const DsConfig& d) { return num(d.gradient_accumulation_steps); }},
      {"gradient_clipping", "grad-clip",
       [](const DsConfig& d) { return num(d.gradient_clipping); }},
      {"zero_optimization.stage", "zero-stage",
       [](const DsConfig& d) { return num(d.zero_optimization.stage); }},
      {"tensor_parallel.size", "tp", [](const DsConfig& d) { return num(d.tensor_parallel.size); }},
      {"tensor_parallel.sequence_parallel", "sequence-parallel",
       [](const DsConfig& d) {
         return std::string(d.tensor_parallel.sequence_parallel ? "1" : "0");
       }},
      {"pipeline.stages", "pp", [](const DsConfig& d) { return num(d.pipeline.stages); }},
      {"sequence_parallel_size", "cp",
       [](const DsConfig& d) { return num(d.context_parallel.size); }},
      {"context_parallel.algo", "cp-algo",
       [](const DsConfig& d) { return d.context_parallel.algo; }},
      {"pipeline.schedule", "pipe-schedule", [](const DsConfig& d) { return d.pipeline.schedule; }},
      {"pipeline.virtual_stages", "virtual-stages",
       [](const DsConfig& d) { return num(d.pipeline.virtual_stages); }},
      {"bf16.enabled", "bf16",
       [](const DsConfig& d) { return std::string(d.bf16_enabled ? "1" : "0"); }},
      {"fp16.enabled", "fp16",
       [](const DsConfig& d) { return std::string(d.fp16.enabled ? "1" : "0"); }},
      {"fp16.loss_scale", "loss-scale", [](const DsConfig& d) { return num(d.fp16.loss_scale); }},
      {"fp16.initial_scale_power", "initial-scale-power",
       [](const DsConfig& d) { return num(d.fp16.initial_scale_power); }},
      {"fp16.loss_scale_window", "loss-scale-window",
       [](const DsConfig& d) { return num(d.fp16.loss_scale_window); }},
      {"fp16.hysteresis", "hysteresis", [](const DsConfig& d) { return num(d.fp16.hysteresis); }},
      {"fp16.min_loss_scale", "min-loss-scale",
       [](const DsConfig& d) { return num(d.fp16.min_loss_scale); }},
      {"communication_data_type", "communication-data-type",
       [](const DsConfig& d) { return d.communication_data_type; }},
      {"device", "device", [](const DsConfig& d) { return d.device; }, false},
      {"zero_optimization.offload_optimizer.device", "offload-optimizer",
       [](const DsConfig& d) { return std::string(d.zero_optimization.offload_optimizer ? "1" : "0"); },
       false},
      {"activation_checkpointing", "checkpoint-activations",
       [](const DsConfig& d) {
         return std::string(d.activation_checkpointing.enabled ? "1" : "0");
       }},
  };
  // Mixture of experts (nn/moe.h; configs/README.md's "moe" section).
  k.push_back({"moe.num_experts", "moe-experts", [](const DsConfig& d) { return num(d.moe.num_experts); }});
  k.push_back({"moe.expert_interval", "moe-every",
               [](const DsConfig& d) { return num(d.moe.expert_interval); }});
  k.push_back({"moe.k", "moe-top-k", [](const DsConfig& d) { return num(d.moe.k); }});
  k.push_back({"moe.capacity_factor", "capacity-factor",
               [](const DsConfig& d) { return num(d.moe.capacity_factor); }});
  k.push_back({"moe.min_capacity", "moe-min-capacity",
               [](const DsConfig& d) { return num(d.moe.min_capacity); }});
  k.push_back({"moe.drop_tokens", "moe-drop-tokens",
               [](const DsConfig& d) { return std::string(d.moe.drop_tokens ? "on" : "off"); }});
  k.push_back({"moe.aux_loss_coef", "moe-aux-loss-coef",
               [](const DsConfig& d) { return num(d.moe.aux_loss_coef); }});
  k.push_back({"moe.ep_size", "ep", [](const DsConfig& d) { return num(d.moe.ep_size); }});
  if (c.steps_per_print)
    k.push_back({"steps_per_print", "log-every",
                 [](const DsConfig& d) { return num(*d.steps_per_print); }});
  if (c.optimizer) {
    const bool sgd = c.optimizer->kind == DsOptimizerConfig::Kind::kSGD;
    k.push_back({"optimizer.type", "optimizer", [](const DsConfig& d) {
                   return std::string(d.optimizer->kind == DsOptimizerConfig::Kind::kSGD ? "sgd"
                                                                                         : "adamw");
                 }});
    k.push_back(
        {"optimizer.params.lr", "lr", [](const DsConfig& d) { return num(d.optimizer->lr); }});
    k.push_back({"optimizer.params.weight_decay", "weight-decay",
                 [](const DsConfig& d) { return num(d.optimizer->weight_decay); }});
    if (sgd) {
      k.push_back({"optimizer.params.momentum", "momentum",
                   [](const DsConfig& d) { return num(d.optimizer->momentum); }});
    } else {
      k.push_back({"optimizer.params.betas", "beta1",
                   [](const DsConfig& d) { return num(d.optimizer->beta1); }});
      k.push_back({"optimizer.params.betas", "beta2",
                   [](const DsConfig& d) { return num(d.optimizer->beta2); }});
    }
  }
  return k;
}

// Numbers compare as numbers (--lr 1e-3 agrees with 0.001), names as text.
bool same(const std::string& a, const std::string& b) {
  char *ea = nullptr, *eb = nullptr;
  double x = std::strtod(a.c_str(), &ea), y = std::strtod(b.c_str(), &eb);
  if (!a.empty() && !b.empty() && *ea == 0 && *eb == 0) return x == y;
  return a == b;
}

// The layout and batch flags that join the file before it is parsed, when
// the file leaves their key out: DeepSpeed derives the batch triple and the
// data-parallel size from them.
struct Injected {
  const char* section;  // "" = top level
  const char* key;
  const char* flag;
  bool is_switch = false;
  bool is_text = false;
};
const Injected kInjected[] = {
    {"", "train_micro_batch_size_per_gpu", "batch-size"},
    {"", "gradient_accumulation_steps", "grad-accum"},
    {"tensor_parallel", "size", "tp"},
    {"tensor_parallel", "sequence_parallel", "sequence-parallel", true},
    {"pipeline", "stages", "pp"},
    {"pipeline", "schedule", "pipe-schedule", false, true},
    {"pipeline", "virtual_stages", "virtual-stages"},
    {"", "sequence_parallel_size", "cp"},
    {"context_parallel", "algo", "cp-algo", false, true},
};

}  // namespace

std::optional<DsConfig> merge_ds_config(Flags& flags, int ranks) {
  const std::string path = flags.str("config");
  if (path.empty()) return std::nullopt;
  const std::string text = read_ds_config_file(path);
  nlohmann::json root = engine::parse_json_strict(text, path);
  // (key path, flag) of each flag joined into the file.
  std::vector<std::pair<std::string, std::string>> joined;
  if (root.is_object()) {
    for (const Injected& in : kInjected) {
      if (!flags.given(in.flag)) continue;
      if (*in.section && !root.contains(in.section)) root[in.section] = nlohmann::json::object();
      nlohmann::json& obj = *in.section ? root[in.section] : root;
      if (!obj.is_object() || obj.contains(in.key)) continue;  // the parser reports / compares
      if (in.is_switch) {
        obj[in.key] = flags.on(in.flag);
      } else if (in.is_text) {
        obj[in.key] = flags.str(in.flag);
      } else {
        const int64_t v = flags.integer(in.flag);
        MS_CHECK(v >= 1, "--", in.flag, " must be positive, got ", flags.str(in.flag));
        obj[in.key] = v;
      }
      joined.emplace_back(*in.section ? str_cat(in.section, ".", in.key) : in.key, in.flag);
    }
  }
  DsConfig c;
  try {
    c = joined.empty() ? parse_ds_config_for_ranks(text, ranks, path)
                       : parse_ds_config_for_ranks(root.dump(), ranks, path);
  } catch (const Error& e) {
    if (joined.empty()) throw;
    std::string from = " (from the command line:";
    for (const auto& [key, flag] : joined)
      from += str_cat(" ", key, " = --", flag, " ", flags.str(flag), ";");
    from.back() = ')';
    throw Error(e.what() + from);
  }
  for (const auto& [key, flag] : joined) {
    c.given.erase(key);
    c.derived[key] = str_cat("--", flag, " ", flags.str(flag), " on the command line");
  }

  for (const Key& k : keys(c)) {
    const bool from_file = c.given.count(k.path) || c.derived.count(k.path);
    const std::string v = k.value(c);
    if (from_file && flags.given(k.flag)) {
      const std::string typed = flags.str(k.flag);
      auto d = c.derived.find(k.path);
      MS_CHECK(same(typed, v), "--", k.flag, " ", typed, " contradicts ", k.path, " ",
               k.path == "optimizer.type" ? str_cat("\"", c.optimizer->type, "\"") : v,
               d == c.derived.end() ? std::string() : str_cat(" (derived: ", d->second, ")"),
               " in ", path);
    }
    if (flags.given(k.flag) && !from_file) {
      c.derived[k.path] = str_cat("--", k.flag, " ", flags.str(k.flag), " on the command line");
      continue;  // the flag sets what the file leaves out
    }
    if (from_file || k.owned) flags.set(k.flag, v);
  }

  // One 16-bit format per run (DeepSpeed: "bfloat16 and fp16 modes cannot be
  // simultaneously enabled"), said in the words the user typed.
  for (const auto& [flag, key, on] : {std::tuple{"fp16", "bf16.enabled", c.bf16_enabled},
                                      std::tuple{"bf16", "fp16.enabled", c.fp16.enabled}})
    MS_CHECK(!(on && flags.given(flag) && flags.on(flag)), "--", flag, " contradicts ", key,
             " true in ", path, " (bfloat16 and fp16 modes cannot be simultaneously enabled)");

  // The schedule: the file's "scheduler" sets the lr of every step, so the
  // flags of minispeed's own schedule cannot also apply.
  if (c.scheduler) {
    for (const char* f : {"schedule", "warmup", "min-lr"}) {
      if (!flags.given(f)) continue;
      if (std::string(f) == "warmup" && c.scheduler->warmup_num_steps == flags.integer(f)) continue;
      throw Error(str_cat("--", f, " ", flags.str(f), " contradicts scheduler.type ",
                          engine::schedule_type_name(c.scheduler->kind), " in ", path,
                          " (the file's scheduler sets the learning rate of every step)"));
    }
  } else if (!flags.given("schedule") && !flags.given("warmup") && !flags.given("min-lr")) {
    flags.set("schedule", "constant");  // DeepSpeed without a scheduler: a constant lr
  }
  return c;
}

DsConfig engine_config(const TrainConfig& c, const std::optional<DsConfig>& file) {
  DsConfig d;
  if (file) {
    d = *file;
  } else {
    d.source = "the command line";
    d.optimizer.reset();  // the caller supplies it (ms::initialize's client optimizer)
  }
  // The merged flags are the run's values; where the file gave a key they
  // equal it (merge_ds_config refused a contradiction).
  d.train_micro_batch_size_per_gpu = c.B;
  d.gradient_accumulation_steps = c.accum;
  d.dp_world_size = c.dp;
  d.train_batch_size = c.B * c.accum * c.dp;
  d.ranks = c.dp * c.tp * c.pp * c.cp;
  d.gradient_clipping = c.grad_clip;
  d.zero_optimization.stage = c.zero_stage;
  d.tensor_parallel = {c.tp, c.sequence_parallel};
  d.pipeline = {c.pp, c.pipe_schedule, c.virtual_stages};
  d.context_parallel = {c.cp, c.cp_algo};
  d.activation_checkpointing.enabled = c.checkpoint_activations;
  const MoEConfig& m = c.model.moe;
  d.moe = {m.experts, m.every, m.top_k, m.capacity_factor, m.min_capacity, m.drop_tokens,
           m.aux_loss_coef, c.ep};
  d.device = device_name(c.device);
  d.zero_optimization.offload_optimizer = c.offload_optimizer;
  // Mixed precision: the flags (checked by mixed_precision_from_flags) and the
  // file's keys agree by now; the engine turns these back into c.precision.
  d.bf16_enabled = c.precision.dtype == DType::BF16;
  d.fp16.enabled = c.precision.dtype == DType::F16;
  d.fp16.loss_scale = c.precision.fp16.loss_scale;
  d.fp16.initial_scale_power = c.precision.fp16.initial_scale_power;
  d.fp16.loss_scale_window = c.precision.fp16.loss_scale_window;
  d.fp16.hysteresis = c.precision.fp16.hysteresis;
  d.fp16.min_loss_scale = c.precision.fp16.min_loss_scale;
  if (c.precision.communication_dtype)
    d.communication_data_type = *c.precision.communication_dtype == DType::F32    ? "fp32"
                                : *c.precision.communication_dtype == DType::F16 ? "fp16"
                                                                                  : "bf16";
  if (d.optimizer) {
    DsOptimizerConfig& o = *d.optimizer;
    o.lr = c.lr;
    o.beta1 = c.beta1;
    o.beta2 = c.beta2;
    o.weight_decay = c.weight_decay;
    o.momentum = c.momentum;
  }
  return d;
}

}  // namespace ms
