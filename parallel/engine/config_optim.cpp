// ds_config.json's optimizer and scheduler sections: DeepSpeed's type names
// and parameter defaults, refusing what minispeed's optim/ cannot run.
#include <algorithm>
#include <cctype>
#include <limits>

#include "parallel/engine/config_readers.h"
#include "tensor/error.h"

namespace ms::engine {

using nlohmann::json;

namespace {
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}
}  // namespace

// --- optimizer ---------------------------------------------------------------

DsOptimizerConfig read_optimizer(Section s) {
  DsOptimizerConfig o;
  const json* type = s.raw("type");
  if (!type) s.fail("type", "is required (\"Adam\", \"AdamW\" or \"SGD\")");
  if (!type->is_string()) s.fail("type", str_cat("must be a string, got ", Section::show(*type)));
  o.type = type->get<std::string>();
  const std::string t = lower(o.type);
  // DeepSpeed lower-cases the names of its own optimizers; any other name is
  // looked up as a torch.optim class, case-sensitively ("SGD").
  static const std::vector<std::string> other_deepspeed = {
      "adagrad", "lamb",    "onebitadam", "zerooneadam", "onebitlamb",
      "muadam",  "muadamw", "musgd",      "lion",        "muon"};
  if (t == "adam" || t == "adamw") {
    o.kind = DsOptimizerConfig::Kind::kAdamW;
  } else if (o.type == "SGD") {
    o.kind = DsOptimizerConfig::Kind::kSGD;
  } else if (std::find(other_deepspeed.begin(), other_deepspeed.end(), t) !=
             other_deepspeed.end()) {
    s.fail("type", str_cat("\"", o.type,
                           "\" is a DeepSpeed optimizer that minispeed does not implement "
                           "(valid: \"Adam\", \"AdamW\", \"SGD\")"));
  } else {
    std::string near = did_you_mean(o.type, {"Adam", "AdamW", "SGD"});
    s.fail("type", str_cat("\"", o.type, "\": ", o.type, " is not a supported DeepSpeed Optimizer",
                           near.empty() ? "" : str_cat("; did you mean \"", near, "\"?"),
                           " (valid: \"Adam\", \"AdamW\" in any case, \"SGD\" exactly as the "
                           "torch.optim class)"));
  }

  Section p = s.object("params");
  if (p.has("max_grad_norm"))
    p.fail("max_grad_norm",
           "'max_grad_norm' is not supported as an optimizer parameter, please switch to using "
           "the deepspeed parameter 'gradient_clipping' (a top-level key)");
  // lr 0 is valid, as in torch.optim and DeepSpeed (evaluation-only runs).
  if (auto lr = p.real("lr", 0, kInf)) o.lr = *lr;
  o.weight_decay = p.real("weight_decay", 0, kInf).value_or(o.weight_decay);
  if (o.kind == DsOptimizerConfig::Kind::kAdamW) {
    if (const json* betas = p.raw("betas")) {
      bool ok = betas->is_array() && betas->size() == 2;
      for (size_t i = 0; ok && i < 2; ++i)
        ok = (*betas)[i].is_number() && (*betas)[i].get<double>() >= 0 &&
             (*betas)[i].get<double>() < 1;
      if (!ok)
        p.fail("betas",
               str_cat("must be an array of two numbers in [0, 1), like [0.9, 0.999], got ",
                       Section::show(*betas)));
      o.beta1 = (*betas)[0].get<double>();
      o.beta2 = (*betas)[1].get<double>();
    }
    o.eps = p.real("eps", 0, kInf).value_or(o.eps);
    if (o.eps == 0) p.fail("eps", "must be a finite number > 0, got 0");
    // torch_adam picks torch's Adam over FusedAdam in DeepSpeed; minispeed has
    // one AdamW, so it changes nothing.
    p.boolean("torch_adam");
    std::optional<bool> w_mode = p.boolean("adam_w_mode");
    // DeepSpeed: effective_adam_w_mode = (name == "adamw") or adam_w_mode.
    if (w_mode && !*w_mode && t == "adam" && o.weight_decay != 0)
      p.fail("adam_w_mode",
             str_cat("false asks for Adam with L2 weight decay (torch.optim.Adam), which minispeed "
                     "does not implement; with weight_decay ",
                     o.weight_decay,
                     " it differs from AdamW. Use AdamW (drop adam_w_mode) or weight_decay 0, "
                     "where the two are the same update"));
    p.finish({"bias_correction", "amsgrad", "set_grad_none", "fused"});
  } else {
    o.momentum = p.real("momentum", 0, kInf).value_or(0.0);
    if (o.momentum >= 1) p.fail("momentum", str_cat("must be in [0, 1), got ", o.momentum));
    p.finish({"dampening", "nesterov", "maximize", "foreach", "differentiable", "fused"});
  }
  s.finish();
  return o;
}

// --- scheduler ---------------------------------------------------------------

LRScheduleConfig read_scheduler(Section s, DsConfig& c) {
  LRScheduleConfig r;
  const std::vector<std::string> ours = {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"};
  const json* type = s.raw("type");
  if (!type) s.fail("type", "is required (\"WarmupLR\", \"WarmupDecayLR\" or \"WarmupCosineLR\")");
  if (!type->is_string()) s.fail("type", str_cat("must be a string, got ", Section::show(*type)));
  const std::string name = type->get<std::string>();
  if (name == "WarmupLR")
    r.kind = LRScheduleConfig::Kind::kWarmupLR;
  else if (name == "WarmupDecayLR")
    r.kind = LRScheduleConfig::Kind::kWarmupDecayLR;
  else if (name == "WarmupCosineLR")
    r.kind = LRScheduleConfig::Kind::kWarmupCosineLR;
  else if (name == "OneCycle" || name == "LRRangeTest")
    s.fail("type",
           str_cat("\"", name,
                   "\" is a DeepSpeed scheduler that minispeed does not "
                   "implement (valid: \"WarmupLR\", \"WarmupDecayLR\", \"WarmupCosineLR\")"));
  else {
    // DeepSpeed looks the name up case-sensitively.
    std::string near = did_you_mean(name, ours);
    s.fail("type", str_cat("\"", name, "\": DeepSpeed does not recognize LR scheduler ", name,
                           near.empty() ? "" : str_cat("; did you mean \"", near, "\"?"),
                           " (valid: \"WarmupLR\", \"WarmupDecayLR\", \"WarmupCosineLR\")"));
  }

  Section p = s.object("params");
  const bool cosine = r.kind == LRScheduleConfig::Kind::kWarmupCosineLR;
  if (r.kind != LRScheduleConfig::Kind::kWarmupLR) {
    auto total = p.integer("total_num_steps", 1, kMax);
    if (!total)
      p.fail("total_num_steps",
             str_cat("is required by ", name, " (the training steps the decay spans)"));
    r.total_num_steps = *total;
  }
  r.warmup_num_steps = p.integer("warmup_num_steps", 0, kMax).value_or(r.warmup_num_steps);
  if (p.choice("warmup_type", {"log", "linear"}).value_or("log") == "linear")
    r.warmup_type = WarmupType::kLinear;
  if (cosine) {
    r.warmup_min_ratio = p.real("warmup_min_ratio", 0, 1).value_or(r.warmup_min_ratio);
    r.cos_min_ratio = p.real("cos_min_ratio", 0, 1).value_or(r.cos_min_ratio);
  } else {
    r.warmup_min_lr = p.real("warmup_min_lr", 0, kInf).value_or(0.0);
    if (auto max = p.real("warmup_max_lr", 0, kInf)) {
      r.warmup_max_lr = *max;
    } else if (r.kind == LRScheduleConfig::Kind::kWarmupLR) {
      // WarmupLR's warmup_max_lr=None means "the optimizer's lr".
      r.warmup_max_lr = c.optimizer ? c.optimizer->lr : DsOptimizerConfig{}.lr;
      c.derived["scheduler.params.warmup_max_lr"] =
          c.optimizer ? "optimizer.params.lr (WarmupLR's default None)"
                      : "the default optimizer lr (no optimizer section; WarmupLR's default None)";
    }
    if (r.warmup_min_lr > r.warmup_max_lr)
      p.fail("warmup_min_lr", str_cat(r.warmup_min_lr, " must be <= warmup_max_lr ",
                                      r.warmup_max_lr, " (the warmup rises from min to max)"));
  }
  // DeepSpeed only logs a warning here; the decay would then never start.
  if (r.kind != LRScheduleConfig::Kind::kWarmupLR && r.total_num_steps < r.warmup_num_steps)
    p.fail("total_num_steps",
           str_cat(r.total_num_steps, " is less than warmup_num_steps ", r.warmup_num_steps,
                   " (default 1000): set warmup_num_steps "
                   "<= total_num_steps"));
  p.finish({"last_batch_iteration"});
  s.finish();
  return r;
}

}  // namespace ms::engine
