#include "parallel/engine/lr_schedules.h"

#include <algorithm>
#include <cmath>

namespace ms::engine {

const char* schedule_type_name(LRScheduleConfig::Kind k) {
  switch (k) {
    case LRScheduleConfig::Kind::kWarmupLR:
      return "WarmupLR";
    case LRScheduleConfig::Kind::kWarmupDecayLR:
      return "WarmupDecayLR";
    case LRScheduleConfig::Kind::kWarmupCosineLR:
      return "WarmupCosineLR";
  }
  return "?";
}

namespace {
// DeepSpeed clamps the warmup length to 2 so that log(W) is never 0.
int64_t warmup_steps(int64_t n) {
  return std::max<int64_t>(2, n);
}
}  // namespace

double warmup_gamma(int64_t warmup_num_steps, WarmupType type, int64_t it) {
  const int64_t W = warmup_steps(warmup_num_steps);
  if (it >= W) return 1.0;
  if (type == WarmupType::kLog)
    return std::log(static_cast<double>(it + 1)) / std::log(static_cast<double>(W));
  return static_cast<double>(it) / static_cast<double>(W);
}

double warmup_lr(const LRScheduleConfig& s, int64_t it) {
  if (it < 0) return 0.0;
  return s.warmup_min_lr +
         (s.warmup_max_lr - s.warmup_min_lr) * warmup_gamma(s.warmup_num_steps, s.warmup_type, it);
}

double warmup_decay_lr(const LRScheduleConfig& s, int64_t it) {
  if (it < 0) return 0.0;
  const int64_t W = warmup_steps(s.warmup_num_steps), T = s.total_num_steps;
  double gamma =
      it < W
          ? warmup_gamma(s.warmup_num_steps, s.warmup_type, it)
          : std::max(0.0, static_cast<double>(T - it) / std::max(1.0, static_cast<double>(T - W)));
  return s.warmup_min_lr + (s.warmup_max_lr - s.warmup_min_lr) * gamma;
}

double warmup_cosine_lr(const LRScheduleConfig& s, double base_lr, int64_t it) {
  if (it < 0) return 0.0;
  const int64_t W = warmup_steps(s.warmup_num_steps), T = s.total_num_steps;
  double ratio;
  if (it < W) {
    ratio = s.warmup_min_ratio +
            (1.0 - s.warmup_min_ratio) * warmup_gamma(s.warmup_num_steps, s.warmup_type, it);
  } else {
    double progress =
        std::min(1.0, static_cast<double>(it - W + 1) / std::max(1.0, static_cast<double>(T - W)));
    constexpr double kPi = 3.14159265358979323846;
    ratio = s.cos_min_ratio + (1.0 - s.cos_min_ratio) * (1.0 + std::cos(kPi * progress)) / 2.0;
  }
  return base_lr * ratio;
}

double schedule_lr(const LRScheduleConfig& s, double base_lr, int64_t it) {
  switch (s.kind) {
    case LRScheduleConfig::Kind::kWarmupLR:
      return warmup_lr(s, it);
    case LRScheduleConfig::Kind::kWarmupDecayLR:
      return warmup_decay_lr(s, it);
    case LRScheduleConfig::Kind::kWarmupCosineLR:
      return warmup_cosine_lr(s, base_lr, it);
  }
  return 0.0;
}

}  // namespace ms::engine
