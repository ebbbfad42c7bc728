// ds_config.json's optimizer and scheduler sections
// (parallel/engine/config_optim.cpp) and DeepSpeed's LR schedules
// (parallel/engine/lr_schedules.h) against hand-computed values.
#include <cmath>

#include "catch_compat.h"
#include "parallel/engine/config.h"
#include "parallel/engine/lr_schedules.h"

using namespace ms;
using Catch::Contains;

namespace {
DsConfig parse(const std::string& text, int dp = 1) {
  return parse_ds_config(text, dp);
}
}  // namespace

TEST_CASE("optimizer: Adam means AdamW, SGD is case-sensitive, DeepSpeed's errors", "[config]") {
  auto opt = [](const std::string& section) {
    return *parse(R"({"train_batch_size": 8, "optimizer": )" + section + "}").optimizer;
  };
  DsOptimizerConfig a = opt(R"({"type": "Adam"})");
  CHECK(a.kind == DsOptimizerConfig::Kind::kAdamW);
  CHECK(a.type == "Adam");
  // FusedAdam's defaults.
  CHECK(a.lr == 1e-3);
  CHECK(a.beta1 == 0.9);
  CHECK(a.beta2 == 0.999);
  CHECK(a.eps == 1e-8);
  CHECK(a.weight_decay == 0);
  CHECK(opt(R"({"type": "ADAMW"})").kind == DsOptimizerConfig::Kind::kAdamW);
  DsOptimizerConfig w = opt(R"({"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.8, 0.95],
                                "eps": 1e-6, "weight_decay": 0.1, "torch_adam": true}})");
  CHECK(w.lr == 3e-4);
  CHECK(w.beta1 == 0.8);
  CHECK(w.beta2 == 0.95);
  CHECK(w.eps == 1e-6);
  CHECK(w.weight_decay == 0.1);
  DsOptimizerConfig s = opt(R"({"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9}})");
  CHECK(s.kind == DsOptimizerConfig::Kind::kSGD);
  CHECK(s.momentum == 0.9);
  CHECK_THROWS_WITH(opt(R"({"type": "sgd"})"),
                    Contains("sgd is not a supported DeepSpeed Optimizer; did you mean \"SGD\"?"));
  CHECK_THROWS_WITH(
      opt(R"({"type": "Lamb"})"),
      Contains("\"Lamb\" is a DeepSpeed optimizer that minispeed does not implement"));
  CHECK_THROWS_WITH(opt(R"({"params": {}})"), Contains("optimizer.type is required"));
  CHECK_THROWS_WITH(opt(R"({"type": "AdamW", "params": {"max_grad_norm": 1.0}})"),
                    Contains("'max_grad_norm' is not supported as an optimizer parameter, please "
                             "switch to using the deepspeed parameter 'gradient_clipping'"));
  // SGD has no betas: the key is unknown there.
  CHECK_THROWS_WITH(opt(R"({"type": "SGD", "params": {"betas": [0.9, 0.99]}})"),
                    Contains("unknown key \"betas\" at optimizer.params.betas"));
  CHECK_THROWS_WITH(opt(R"({"type": "SGD", "params": {"nesterov": true}})"),
                    Contains("optimizer.params.nesterov is a DeepSpeed key that minispeed does not "
                             "implement"));
  // lr 0 is valid (torch.optim and DeepSpeed accept it: evaluation-only runs);
  // a negative one is not.
  CHECK(opt(R"({"type": "AdamW", "params": {"lr": 0}})").lr == 0);
  CHECK_THROWS_WITH(opt(R"({"type": "AdamW", "params": {"lr": -1e-3}})"),
                    Contains("optimizer.params.lr must be a finite number >= 0, got -0.001"));
  // Adam with adam_w_mode false is torch.optim.Adam (L2 decay): refused unless
  // weight_decay is 0, where it is the same update as AdamW.
  CHECK_THROWS_WITH(
      opt(R"({"type": "Adam", "params": {"adam_w_mode": false, "weight_decay": 0.1}})"),
      Contains("optimizer.params.adam_w_mode false asks for Adam with L2 weight decay"));
  CHECK(opt(R"({"type": "Adam", "params": {"adam_w_mode": false}})").kind ==
        DsOptimizerConfig::Kind::kAdamW);
  // DeepSpeed: effective_adam_w_mode = (name == "adamw") or adam_w_mode.
  CHECK(opt(R"({"type": "AdamW", "params": {"adam_w_mode": false, "weight_decay": 0.1}})").kind ==
        DsOptimizerConfig::Kind::kAdamW);
}

TEST_CASE("scheduler: types, required params, defaults, errors", "[config]") {
  auto sched = [](const std::string& section, const std::string& extra = "") {
    return *parse(R"({"train_batch_size": 8, )" + extra + R"("scheduler": )" + section + "}")
                .scheduler;
  };
  using K = engine::LRScheduleConfig::Kind;
  engine::LRScheduleConfig w = sched(R"({"type": "WarmupLR"})");
  CHECK(w.kind == K::kWarmupLR);
  CHECK(w.warmup_min_lr == 0);
  CHECK(w.warmup_num_steps == 1000);
  CHECK(w.warmup_type == engine::WarmupType::kLog);
  CHECK(w.warmup_max_lr == 1e-3);  // the default optimizer's lr
  // WarmupLR's warmup_max_lr None = the optimizer's lr.
  DsConfig c =
      parse(R"({"train_batch_size": 8, "optimizer": {"type": "AdamW", "params": {"lr": 0.02}},
                         "scheduler": {"type": "WarmupLR"}})");
  CHECK(c.scheduler->warmup_max_lr == 0.02);
  CHECK(c.derived.count("scheduler.params.warmup_max_lr"));
  engine::LRScheduleConfig d =
      sched(R"({"type": "WarmupDecayLR", "params": {"total_num_steps": 5000}})");
  CHECK(d.warmup_max_lr == 0.001);
  CHECK(d.total_num_steps == 5000);
  engine::LRScheduleConfig cs = sched(
      R"({"type": "WarmupCosineLR", "params": {"total_num_steps": 100, "warmup_num_steps": 10,
          "warmup_type": "linear"}})");
  CHECK(cs.kind == K::kWarmupCosineLR);
  CHECK(cs.warmup_min_ratio == 0);
  CHECK(cs.cos_min_ratio == 0.0001);
  CHECK(cs.warmup_type == engine::WarmupType::kLinear);

  CHECK_THROWS_WITH(sched(R"({"type": "WarmupCosine"})"),
                    Contains("DeepSpeed does not recognize LR scheduler WarmupCosine; did you mean "
                             "\"WarmupCosineLR\"?"));
  CHECK_THROWS_WITH(sched(R"({"type": "OneCycle"})"), Contains("minispeed does not implement"));
  CHECK_THROWS_WITH(sched(R"({"type": "WarmupDecayLR"})"),
                    Contains("scheduler.params.total_num_steps is required by WarmupDecayLR"));
  CHECK_THROWS_WITH(sched(R"({"type": "WarmupCosineLR", "params": {"total_num_steps": 100}})"),
                    Contains("total_num_steps 100 is less than warmup_num_steps 1000"));
  CHECK_THROWS_WITH(sched(R"({"type": "WarmupLR", "params": {"warmup_type": "cosine"}})"),
                    Contains("scheduler.params.warmup_type must be one of \"log\", \"linear\""));
  CHECK_THROWS_WITH(sched(R"({"type": "WarmupLR", "params": {"warmup_min_lr": 0.1,
                              "warmup_max_lr": 0.01}})"),
                    Contains("warmup_min_lr 0.1 must be <= warmup_max_lr 0.01"));
  // Ratios belong to WarmupCosineLR only.
  CHECK_THROWS_WITH(sched(R"({"type": "WarmupLR", "params": {"cos_min_ratio": 0.1}})"),
                    Contains("unknown key \"cos_min_ratio\" at scheduler.params.cos_min_ratio"));
}

TEST_CASE("DeepSpeed's LR schedules at hand-computed steps", "[config]") {
  using engine::LRScheduleConfig;
  using K = LRScheduleConfig::Kind;
  LRScheduleConfig w;
  w.kind = K::kWarmupLR;
  w.warmup_min_lr = 0.0;
  w.warmup_max_lr = 0.01;
  w.warmup_num_steps = 10;
  // log warmup: lr = 0.01 · log(it + 1)/log(10).
  CHECK(engine::schedule_lr(w, 0, 0) == 0.0);
  CHECK(engine::schedule_lr(w, 0, 4) == Approx(0.01 * 0.6989700043360188).epsilon(1e-12));
  CHECK(engine::schedule_lr(w, 0, 9) == Approx(0.01).epsilon(1e-12));  // log 10 / log 10
  CHECK(engine::schedule_lr(w, 0, 10) == 0.01);
  CHECK(engine::schedule_lr(w, 0, 500) == 0.01);
  CHECK(engine::schedule_lr(w, 0, -1) == 0.0);  // before the first scheduler step
  w.warmup_type = engine::WarmupType::kLinear;
  w.warmup_min_lr = 0.002;
  CHECK(engine::schedule_lr(w, 0, 4) == Approx(0.002 + 0.008 * 0.4).epsilon(1e-12));
  // warmup_num_steps 0 still warms up over W = max(2, 0) = 2 steps.
  w.warmup_num_steps = 0;
  CHECK(engine::schedule_lr(w, 0, 0) == 0.002);
  CHECK(engine::schedule_lr(w, 0, 1) == Approx(0.002 + 0.008 * 0.5).epsilon(1e-12));
  CHECK(engine::schedule_lr(w, 0, 2) == 0.01);

  LRScheduleConfig d;
  d.kind = K::kWarmupDecayLR;
  d.warmup_min_lr = 0.0;
  d.warmup_max_lr = 0.01;
  d.warmup_num_steps = 10;
  d.total_num_steps = 20;
  d.warmup_type = engine::WarmupType::kLinear;
  CHECK(engine::schedule_lr(d, 0, 5) == Approx(0.005).epsilon(1e-12));
  CHECK(engine::schedule_lr(d, 0, 10) == Approx(0.01).epsilon(1e-12));  // (20 − 10)/10
  CHECK(engine::schedule_lr(d, 0, 15) == Approx(0.005).epsilon(1e-12));
  CHECK(engine::schedule_lr(d, 0, 20) == 0.0);
  CHECK(engine::schedule_lr(d, 0, 25) == 0.0);  // clamped at 0

  LRScheduleConfig c;
  c.kind = K::kWarmupCosineLR;
  c.warmup_num_steps = 10;
  c.total_num_steps = 20;
  c.warmup_min_ratio = 0.2;
  c.cos_min_ratio = 0.1;
  c.warmup_type = engine::WarmupType::kLinear;
  const double base = 0.1;
  CHECK(engine::schedule_lr(c, base, 0) == Approx(0.02).epsilon(1e-12));
  CHECK(engine::schedule_lr(c, base, 5) == Approx(0.1 * (0.2 + 0.8 * 0.5)).epsilon(1e-12));
  // it = 10: progress (10 − 10 + 1)/10 = 0.1; ratio = 0.1 + 0.9 (1 + cos 0.1π)/2.
  CHECK(engine::schedule_lr(c, base, 10) ==
        Approx(0.1 * (0.1 + 0.9 * (1 + 0.9510565162951535) / 2)).epsilon(1e-12));
  CHECK(engine::schedule_lr(c, base, 14) == Approx(0.1 * 0.55).epsilon(1e-12));  // progress 0.5
  CHECK(engine::schedule_lr(c, base, 19) == Approx(0.01).epsilon(1e-12));        // progress 1
  CHECK(engine::schedule_lr(c, base, 30) == Approx(0.01).epsilon(1e-12));        // clamped
}
