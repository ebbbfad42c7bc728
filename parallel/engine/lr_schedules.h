// DeepSpeed's three warmup schedules (deepspeed/runtime/lr_schedules.py,
// 0.19.6) as pure functions of the scheduler's counter `it`
// (last_batch_iteration: 0 after the first scheduler.step(); the engine steps
// it once per optimizer step that was not skipped). optim/'s LRSchedule is
// nanoGPT's warmup + cosine, a different formula, so these live beside the
// ds_config that names them.
#pragma once
#include <cstdint>
#include <string>

namespace ms::engine {

enum class WarmupType { kLog, kLinear };  // DeepSpeed's warmup_type "log" | "linear"

struct LRScheduleConfig {
  enum class Kind { kWarmupLR, kWarmupDecayLR, kWarmupCosineLR } kind = Kind::kWarmupLR;
  // WarmupLR and WarmupDecayLR: absolute learning rates.
  double warmup_min_lr = 0.0;
  double warmup_max_lr = 0.001;  // WarmupLR: the optimizer's lr unless given
  // WarmupCosineLR: ratios of the optimizer's lr.
  double warmup_min_ratio = 0.0, cos_min_ratio = 0.0001;
  int64_t warmup_num_steps = 1000;
  int64_t total_num_steps = 0;  // WarmupDecayLR, WarmupCosineLR (required there)
  WarmupType warmup_type = WarmupType::kLog;
};

const char* schedule_type_name(LRScheduleConfig::Kind k);  // "WarmupLR", ...

// The warmup fraction γ ∈ [0, 1] at `it`: W = max(2, warmup_num_steps) (so
// warmup_num_steps 0 or 1 still warms up over 2 steps); for it < W,
// log(it + 1)/log(W) or it/W, else 1.
double warmup_gamma(int64_t warmup_num_steps, WarmupType type, int64_t it);

// lr = min + (max − min)·γ.
double warmup_lr(const LRScheduleConfig& s, int64_t it);
// Warmup as WarmupLR, then linear decay: γ = max(0, (T − it)/max(1, T − W)).
double warmup_decay_lr(const LRScheduleConfig& s, int64_t it);
// base_lr × ratio: warmup ratio = warmup_min_ratio + (1 − warmup_min_ratio)·γ;
// after it, progress = min(1, (it − W + 1)/max(1, T − W)) and
// ratio = cos_min + (1 − cos_min)·(1 + cos(π·progress))/2.
double warmup_cosine_lr(const LRScheduleConfig& s, double base_lr, int64_t it);

// Dispatches on kind. `base_lr` is the optimizer's lr (used by WarmupCosineLR).
// it < 0 (before the first scheduler step) gives 0, as DeepSpeed's get_lr does.
double schedule_lr(const LRScheduleConfig& s, double base_lr, int64_t it);

}  // namespace ms::engine
