// DeepSpeed's LR schedules (parallel/engine/lr_schedules.h) against
// hand-computed values.
#include <cmath>

#include "catch_compat.h"
#include "parallel/engine/lr_schedules.h"

using namespace ms;

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
  CHECK(engine::schedule_lr(c, base, 19) == Approx(0.01).epsilon(1e-12));      // progress 1
  CHECK(engine::schedule_lr(c, base, 30) == Approx(0.01).epsilon(1e-12));      // clamped
}
