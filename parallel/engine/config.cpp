#include "parallel/engine/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "parallel/engine/config_readers.h"
#include "parallel/engine/json_reader.h"
#include "tensor/error.h"

namespace ms {

using engine::Section;
using nlohmann::json;

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr double kInf = std::numeric_limits<double>::infinity();

// --- the batch triple (DeepSpeedConfig._set_batch_related_parameters) -------

void read_batch(Section& top, DsConfig& c, int dp) {
  const std::string& src = c.source;
  std::optional<int64_t> tbs = top.integer("train_batch_size", kMin, kMax);
  std::optional<int64_t> micro = top.integer("train_micro_batch_size_per_gpu", kMin, kMax);
  std::optional<int64_t> gas = top.integer("gradient_accumulation_steps", kMin, kMax);
  // DeepSpeed's _batch_assertion messages, checked on the given values first
  // (so a negative value is named as given, before any division).
  auto positive = [&](std::optional<int64_t> v, const char* deepspeed_name, const char* key) {
    MS_CHECK(!v || *v > 0, src, ": ", deepspeed_name, ": ", *v, " has to be greater than 0 (", key,
             ")");
  };
  positive(tbs, "Train batch size", "train_batch_size");
  positive(micro, "Micro batch size per gpu", "train_micro_batch_size_per_gpu");
  positive(gas, "Gradient accumulation steps", "gradient_accumulation_steps");
  MS_CHECK(tbs || micro, src,
           ": Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided",
           gas ? " (gradient_accumulation_steps alone does not fix the batch)" : "");

  const int64_t ws = dp;
  auto derive = [&](const char* key, int64_t value, const std::string& how) {
    c.derived[key] = how;
    return value;
  };
  auto product = [&](int64_t a, int64_t b, int64_t d) {
    int64_t ab = 0, abd = 0;
    bool overflow = __builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, d, &abd);
    MS_CHECK(!overflow, src, ": train_micro_batch_size_per_gpu ", a,
             " × gradient_accumulation_steps ", b, " × dp_world_size ", d,
             " overflows a 64-bit integer");
    return abd;
  };
  if (tbs && micro && gas) {
    c.train_batch_size = *tbs, c.train_micro_batch_size_per_gpu = *micro;
    c.gradient_accumulation_steps = *gas;
  } else if (tbs && micro) {
    c.train_batch_size = *tbs, c.train_micro_batch_size_per_gpu = *micro;
    c.gradient_accumulation_steps = derive(
        "gradient_accumulation_steps", *tbs / *micro / ws,
        str_cat("train_batch_size // train_micro_batch_size_per_gpu // dp_world_size = ", *tbs,
                " // ", *micro, " // ", ws));
  } else if (tbs && gas) {
    c.train_batch_size = *tbs, c.gradient_accumulation_steps = *gas;
    c.train_micro_batch_size_per_gpu =
        derive("train_micro_batch_size_per_gpu", *tbs / ws / *gas,
               str_cat("train_batch_size // dp_world_size // gradient_accumulation_steps = ", *tbs,
                       " // ", ws, " // ", *gas));
  } else if (micro && gas) {
    c.train_micro_batch_size_per_gpu = *micro, c.gradient_accumulation_steps = *gas;
    c.train_batch_size = derive(
        "train_batch_size", product(*micro, *gas, ws),
        str_cat("train_micro_batch_size_per_gpu × gradient_accumulation_steps × dp_world_size = ",
                *micro, " × ", *gas, " × ", ws));
  } else if (tbs) {
    c.train_batch_size = *tbs;
    c.gradient_accumulation_steps =
        derive("gradient_accumulation_steps", 1, "1 (only train_batch_size given)");
    c.train_micro_batch_size_per_gpu =
        derive("train_micro_batch_size_per_gpu", *tbs / ws,
               str_cat("train_batch_size // dp_world_size = ", *tbs, " // ", ws));
  } else {
    c.train_micro_batch_size_per_gpu = *micro;
    c.gradient_accumulation_steps =
        derive("gradient_accumulation_steps", 1, "1 (only train_micro_batch_size_per_gpu given)");
    c.train_batch_size =
        derive("train_batch_size", product(*micro, 1, ws),
               str_cat("train_micro_batch_size_per_gpu × dp_world_size = ", *micro, " × ", ws));
  }

  // Where the numbers came from, which DeepSpeed's assertion does not say
  // (DeepSpeed#6914: users did not know what world_size it had used).
  auto origin = [&] {
    std::string s = " [";
    for (const char* k :
         {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"}) {
      auto it = c.derived.find(k);
      s += it == c.derived.end() ? str_cat(k, " given; ")
                                 : str_cat(k, " derived = ", it->second, " (floor division); ");
    }
    return s + str_cat("world_size is the data-parallel size ", ws, " = ",
                       c.ranks > 0 ? str_cat(c.ranks, " ranks") : std::string("ranks"),
                       " / (tensor_parallel.size ", c.tensor_parallel.size, " × pipeline.stages ",
                       c.pipeline.stages,
                       c.context_parallel.size > 1
                           ? str_cat(" × sequence_parallel_size ", c.context_parallel.size)
                           : std::string(),
                       ")]");
  };
  MS_CHECK(c.train_micro_batch_size_per_gpu > 0, src,
           ": Micro batch size per gpu: ", c.train_micro_batch_size_per_gpu,
           " has to be greater than 0", origin());
  MS_CHECK(c.gradient_accumulation_steps > 0, src,
           ": Gradient accumulation steps: ", c.gradient_accumulation_steps,
           " has to be greater than 0", origin());
  MS_CHECK(c.train_batch_size ==
               product(c.train_micro_batch_size_per_gpu, c.gradient_accumulation_steps, ws),
           src,
           ": Check batch related parameters. train_batch_size is not equal to "
           "micro_batch_per_gpu * gradient_acc_step * world_size ",
           c.train_batch_size, " != ", c.train_micro_batch_size_per_gpu, " * ",
           c.gradient_accumulation_steps, " * ", ws, origin());
}

// --- precision, ZeRO, activation checkpointing, tp, pp -----------------------

void read_fp16(Section s, DsFp16Config& f) {
  f.enabled = s.boolean("enabled").value_or(false);
  f.loss_scale = s.real("loss_scale", -kInf, kInf).value_or(0.0);
  // DeepSpeedFP16Config's validators, verbatim.
  if (f.loss_scale < 0)
    s.fail("loss_scale",
           str_cat("must be >= 0 (0 enables dynamic loss scaling), got ", f.loss_scale));
  // 2^127 is the largest power of two an fp32 scale can hold.
  f.initial_scale_power = s.integer("initial_scale_power", 0, 127).value_or(16);
  f.loss_scale_window = s.integer("loss_scale_window", kMin, kMax).value_or(1000);
  if (f.loss_scale == 0 && f.loss_scale_window <= 0)
    s.fail("loss_scale_window",
           str_cat("must be > 0 when dynamic loss scaling is enabled (loss_scale=0), got ",
                   f.loss_scale_window));
  f.hysteresis = s.integer("hysteresis", 1, kMax).value_or(2);
  f.min_loss_scale = s.real("min_loss_scale", 0, kInf).value_or(1.0);
  if (f.min_loss_scale == 0) s.fail("min_loss_scale", "must be > 0, got 0");
  if (f.loss_scale == 0 &&
      f.min_loss_scale > std::ldexp(1.0, static_cast<int>(f.initial_scale_power)))
    s.fail("min_loss_scale", str_cat(f.min_loss_scale, " is above the initial scale 2^",
                                     f.initial_scale_power, " (initial_scale_power)"));
  s.finish({"auto_cast", "consecutive_hysteresis", "fp16_master_weights_and_grads"});
}

bool read_bf16(Section s) {
  bool on = s.boolean("enabled").value_or(false);
  s.finish({"immediate_grad_update", "check_grad_overflow", "bf16_master_weights_and_grads",
            "bf16_optimizer_states"});
  return on;
}

void read_zero(Section s, DsConfig& c) {
  DsZeroConfig& z = c.zero_optimization;
  z.stage = s.integer("stage", 0, 3).value_or(0);
  z.reduce_bucket_size = s.integer("reduce_bucket_size", 1, kMax).value_or(z.reduce_bucket_size);
  z.allgather_bucket_size =
      s.integer("allgather_bucket_size", 1, kMax).value_or(z.allgather_bucket_size);
  if (auto o = s.boolean("overlap_comm")) {
    z.overlap_comm = *o;
  } else {
    z.overlap_comm = z.stage == 3;
    c.derived["zero_optimization.overlap_comm"] = "stage == 3 (DeepSpeed's default None)";
  }
  {
    Section off = s.object("offload_optimizer");
    const std::string dev = off.choice("device", {"none", "cpu", "nvme"}).value_or("none");
    if (dev == "nvme")
      off.fail("device", "\"nvme\" (ZeRO-Infinity) is not implemented; use \"cpu\" or \"none\"");
    z.offload_optimizer = dev == "cpu";
    off.boolean("pin_memory");  // accepted; the host copies here use pageable memory
    off.finish({"nvme_path", "buffer_count", "pipeline_read", "pipeline_write", "fast_init",
                "ratio"});
  }
  s.finish({"contiguous_gradients",
            "reduce_scatter",
            "allgather_partitions",
            "load_from_fp32_weights",
            "elastic_checkpoint",
            "sub_group_size",
            "stage3_prefetch_bucket_size",
            "prefetch_bucket_size",
            "stage3_param_persistence_threshold",
            "stage3_max_live_parameters",
            "stage3_max_reuse_distance",
            "stage3_gather_16bit_weights_on_model_save",
            "round_robin_gradients",
            "ignore_unused_parameters",
            "offload_param",
            "cpu_offload",
            "zero_hpz_partition_size",
            "zero_quantized_weights",
            "zero_quantized_gradients",
            "mics_shard_size"});
}

void read_activation_checkpointing(Section s, DsActivationCheckpointingConfig& a) {
  a.partition_activations = s.boolean("partition_activations").value_or(false);
  a.number_checkpoints = s.integer("number_checkpoints", 1, kMax);
  s.finish({"cpu_checkpointing", "contiguous_memory_optimization",
            "synchronize_checkpoint_boundary", "profile"});
}

void read_tensor_parallel(Section s, DsTensorParallelConfig& t) {
  t.size = s.integer("size", 1, kMax).value_or(1);
  t.sequence_parallel = s.boolean("sequence_parallel").value_or(false);
  if (t.sequence_parallel && t.size == 1)
    s.fail("sequence_parallel",
           "true needs tensor_parallel.size > 1 (it splits the sequence over the tensor-parallel "
           "ranks; with size 1 there are none)");
  s.finish();
}

// The algorithm's names are Megatron's cp_comm_type flavours (a2a, p2p with
// and without the zig-zag layout, all_gather) under the papers' names.
void read_context_parallel(Section& top, DsContextParallelConfig& c) {
  c.size = top.integer("sequence_parallel_size", 1, kMax).value_or(1);
  Section s = top.object("context_parallel");
  c.algo = s.choice("algo", {"ulysses", "ring", "zigzag", "allgather"}).value_or("ulysses");
  s.finish();
}

void read_pipeline(Section s, DsPipelineConfig& p) {
  p.stages = s.integer("stages", 1, kMax).value_or(1);
  p.schedule = s.choice("schedule", {"gpipe", "1f1b", "interleaved"}).value_or("1f1b");
  p.virtual_stages = s.integer("virtual_stages", 1, kMax).value_or(1);
  if (p.virtual_stages > 1 && p.schedule != "interleaved")
    s.fail("virtual_stages",
           str_cat(p.virtual_stages, " needs pipeline.schedule \"interleaved\" (\"", p.schedule,
                   "\" holds one model chunk per stage)"));
  s.finish();
}

void read_moe(Section s, DsMoEConfig& m) {
  m.num_experts = s.integer("num_experts", 0, kMax).value_or(0);
  m.expert_interval = s.integer("expert_interval", 1, kMax).value_or(2);
  m.k = s.integer("k", 1, 2).value_or(1);
  if (m.num_experts > 0 && m.k > m.num_experts)
    s.fail("k", str_cat(m.k, " exceeds moe.num_experts ", m.num_experts));
  m.capacity_factor = s.real("capacity_factor", 0, kInf).value_or(1.0);
  if (m.capacity_factor == 0) s.fail("capacity_factor", "must be > 0, got 0");
  m.min_capacity = s.integer("min_capacity", 0, kMax).value_or(4);
  m.drop_tokens = s.boolean("drop_tokens").value_or(true);
  m.aux_loss_coef = s.real("aux_loss_coef", 0, kInf).value_or(0.01);
  m.ep_size = s.integer("ep_size", 1, kMax).value_or(1);
  s.finish({"use_rts", "noisy_gate_policy", "eval_capacity_factor", "use_residual",
            "use_tutel", "enable_expert_tensor_parallelism", "top2_2nd_expert_sampling"});
}

// `size` is the data-parallel size, or with `size_is_ranks` the whole job's
// ranks, divided here by tensor_parallel.size × pipeline.stages.
DsConfig parse_from(const std::string& text, int size, bool size_is_ranks,
                    const std::string& source) {
  MS_CHECK(size >= 1, source, ": the ",
           size_is_ranks ? "number of ranks" : "data-parallel world size", " must be >= 1, got ",
           size);
  DsConfig c;
  c.source = source;
  json root = engine::parse_json_strict(text, source);
  MS_CHECK(root.is_object(), source, ": the top level must be a JSON object ({...}), got ",
           Section::show(root));
  Section top(root, "", source, &c.given);

  // Read first: they fix the data-parallel size, and the batch error names them.
  read_tensor_parallel(top.object("tensor_parallel"), c.tensor_parallel);
  read_pipeline(top.object("pipeline"), c.pipeline);
  read_context_parallel(top, c.context_parallel);
  int dp = size;
  if (size_is_ranks) {
    const int64_t tp = c.tensor_parallel.size, pp = c.pipeline.stages,
                  cp = c.context_parallel.size;
    int64_t model_ranks = 0;
    bool overflow = __builtin_mul_overflow(tp, pp, &model_ranks) ||
                    __builtin_mul_overflow(model_ranks, cp, &model_ranks);
    MS_CHECK(!overflow && size % model_ranks == 0, source, ": the ", size,
             " ranks are not divisible by tensor_parallel.size ", tp, " × pipeline.stages ", pp,
             cp > 1 ? str_cat(" × sequence_parallel_size ", cp) : std::string(),
             overflow ? std::string() : str_cat(" = ", model_ranks),
             cp > 1 ? " (the ranks form ranks / (tp × pp × cp) data-parallel replicas of tp × pp × "
                      "cp ranks each)"
                    : " (the ranks form ranks / (tp × pp) data-parallel replicas of tp × pp ranks "
                      "each)");
    dp = static_cast<int>(size / model_ranks);
    c.ranks = size;
  }
  c.dp_world_size = dp;
  read_batch(top, c, dp);

  if (top.has("optimizer")) c.optimizer = engine::read_optimizer(top.object("optimizer"));
  if (top.has("scheduler")) c.scheduler = engine::read_scheduler(top.object("scheduler"), c);
  c.gradient_clipping = top.real("gradient_clipping", 0, kInf).value_or(1.0);
  c.steps_per_print = top.integer("steps_per_print", 1, kMax);

  read_moe(top.object("moe"), c.moe);
  read_fp16(top.object("fp16"), c.fp16);
  // "bfloat16" is DeepSpeed's legacy name for the section.
  const bool legacy = top.has("bfloat16");
  if (legacy && top.has("bf16"))
    top.fail("bfloat16", "and bf16 are the same section (bfloat16 is the legacy name): keep bf16");
  c.bf16_enabled = read_bf16(top.object(legacy ? "bfloat16" : "bf16"));
  MS_CHECK(!(c.fp16.enabled && c.bf16_enabled), source,
           ": bfloat16 and fp16 modes cannot be simultaneously enabled (fp16.enabled and "
           "bf16.enabled are both true)");
  c.communication_data_type =
      top.choice("communication_data_type", {"fp32", "fp16", "bf16"}).value_or("");
  read_zero(top.object("zero_optimization"), c);
  c.device = top.choice("device", {"cpu", "cuda", "sim"}).value_or("");
  c.activation_checkpointing.enabled = top.has("activation_checkpointing");
  read_activation_checkpointing(top.object("activation_checkpointing"), c.activation_checkpointing);

  // PipelineEngine's assertion (DeepSpeed#4164: ZeRO-2/3 reduce at every
  // micro-step, a pipeline runs many micro-steps per step).
  MS_CHECK(
      !(c.pipeline.stages > 1 && c.zero_optimization.stage >= 2), source,
      ": ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism (zero_optimization.stage ",
      c.zero_optimization.stage, " with pipeline.stages ", c.pipeline.stages,
      "): use stage 0 or 1");
  // Interleaved 1F1B sends micro-batches through the chunks in groups of p
  // (Narayanan et al. 2021, §2.2.2); a pipeline's micro-batches per step are
  // gradient_accumulation_steps, as in DeepSpeed's PipelineEngine.
  MS_CHECK(c.pipeline.schedule != "interleaved" ||
               c.gradient_accumulation_steps % c.pipeline.stages == 0,
           source, ": pipeline.schedule \"interleaved\" needs gradient_accumulation_steps (",
           c.gradient_accumulation_steps, ", the micro-batches per step) to be a multiple of ",
           "pipeline.stages (", c.pipeline.stages, ")");

  top.finish({"wall_clock_breakdown",
              "zero_allow_untested_optimizer",
              "flops_profiler",
              "prescale_gradients",
              "gradient_predivide_factor",
              "sparse_gradients",
              "amp",
              "data_types",
              "checkpoint",
              "elasticity",
              "compile",
              "tensorboard",
              "wandb",
              "csv_monitor",
              "comms_logger",
              "dump_state",
              "memory_breakdown",
              "zero_force_ds_cpu_optimizer",
              "autotuning",
              "data_efficiency",
              "compression_training",
              "aio",
              "nebula"});
  return c;
}

}  // namespace

DsConfig parse_ds_config(const std::string& json_text, int dp_world_size) {
  return parse_from(json_text, dp_world_size, false, "ds_config");
}

DsConfig parse_ds_config_for_ranks(const std::string& json_text, int ranks,
                                   const std::string& source) {
  return parse_from(json_text, ranks, true, source);
}

std::string read_ds_config_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MS_CHECK(fs::exists(path, ec), "ds_config: no such file '", path, "'");
  MS_CHECK(fs::is_regular_file(path, ec), "ds_config: '", path, "' is not a regular file");
  // A configuration is a few KB; reading a multi-GB file (a data file or a
  // checkpoint named by mistake) whole would exhaust memory first.
  constexpr uintmax_t kMaxConfigBytes = 1 << 20;
  const uintmax_t bytes = fs::file_size(path, ec);
  MS_CHECK(ec || bytes <= kMaxConfigBytes, "ds_config: '", path, "' is ", bytes,
           " bytes; a configuration is a few KB (at most ", kMaxConfigBytes,
           " bytes): is it the right file?");
  std::ifstream in(path, std::ios::binary);
  MS_CHECK(in, "ds_config: cannot read '", path, "' (permission denied?)");
  std::ostringstream text;
  text << in.rdbuf();
  MS_CHECK(!in.bad(), "ds_config: error while reading '", path, "'");
  return text.str();
}

DsConfig load_ds_config(const std::string& path, int dp_world_size) {
  return parse_from(read_ds_config_file(path), dp_world_size, false, path);
}

DsConfig load_ds_config_for_ranks(const std::string& path, int ranks) {
  return parse_from(read_ds_config_file(path), ranks, true, path);
}

}  // namespace ms
