// The fp16 loss scaler (optim/loss_scaler.h), step by step against traces
// worked out by hand from DeepSpeed's DynamicLossScaler.update_scale (rules
// restated in loss_scaler.h); has_overflow on ±inf and NaN in every float
// dtype; the fused unscale-and-clip.
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "optim/loss_scaler.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

// One update() and the state it must leave.
struct Step {
  bool overflow;
  double scale;        // loss scale after the update
  int cur_hysteresis;  // after the update
};

// Feeds the steps one by one; each must be skipped exactly when it overflows
// and leave the written scale and hysteresis.
void run_trace(DynamicLossScaler& s, const std::vector<Step>& trace) {
  for (size_t i = 0; i < trace.size(); ++i) {
    INFO("update " << i << " (overflow " << trace[i].overflow << ")");
    const int64_t iter = s.state().cur_iter;
    CHECK(s.update(trace[i].overflow) == trace[i].overflow);
    CHECK(s.loss_scale() == trace[i].scale);
    CHECK(s.state().cur_hysteresis == trace[i].cur_hysteresis);
    CHECK(s.state().cur_iter == iter + 1);
    if (trace[i].overflow) CHECK(s.state().last_overflow_iter == iter);
  }
}

LossScalerConfig dyn(int power, int64_t window, int hysteresis, double min_scale,
                     bool consecutive = false) {
  LossScalerConfig c;
  c.initial_scale_power = power;
  c.loss_scale_window = window;
  c.hysteresis = hysteresis;
  c.min_loss_scale = min_scale;
  c.consecutive_hysteresis = consecutive;
  return c;
}

constexpr bool O = true, C = false;  // overflow, clean

}  // namespace

TEST_CASE("loss scaler: DeepSpeed's defaults start at 2^16 with hysteresis 2", "[loss_scaler]") {
  auto s = make_loss_scaler(LossScalerConfig{});
  CHECK(s->dynamic());
  CHECK(s->loss_scale() == 65536);
  CHECK(s->state() == LossScalerState{65536, 0, -1, 2});
}

TEST_CASE(
    "loss scaler: hysteresis 1, window 3 — halve on every overflow, double on the "
    "window-th clean step in a row",
    "[loss_scaler]") {
  DynamicLossScaler s(dyn(4, 3, 1, 1));  // 2^4 = 16
  // DynamicLossScaler.update_scale doubles when (cur_iter - last_overflow_iter)
  // % 3 == 0; the start counts as an overflow at iteration -1.
  run_trace(s, {
                   {C, 16, 1},  // iter 0: 0 - (-1) = 1
                   {C, 16, 1},  // iter 1: 2
                   {C, 32, 1},  // iter 2: 3 → ×2 (the 3rd clean step)
                   {C, 32, 1},  // iter 3: 4
                   {C, 32, 1},  // iter 4: 5
                   {C, 64, 1},  // iter 5: 6 → ×2 (window more clean steps)
                   {O, 32, 1},  // iter 6: overflow, hysteresis 1 → halve; last = 6
                   {C, 32, 1},  // iter 7: 1
                   {C, 32, 1},  // iter 8: 2
                   {C, 64, 1},  // iter 9: 3 → ×2
                   {O, 32, 1},  // iter 10: halve
                   {O, 16, 1},  // iter 11: halve again
                   {C, 16, 1},  // iter 12: 1 — the count restarted at 11
               });
  CHECK(s.last_event().empty());
  s.update(true);
  CHECK(s.last_event() == "OVERFLOW! Skipping step. Attempted loss scale: 16, reducing to 8");
}

// The off-by-one this pins: FP16_Optimizer._update_scale (fp16/fused_optimizer.py)
// doubles on the (window+1)-th clean step; the DynamicLossScaler ZeRO uses, on
// the window-th. With DeepSpeed's defaults: the 1000th update doubles 2^16.
TEST_CASE("loss scaler: DeepSpeed's defaults double on the 1000th clean update, not the 1001st",
          "[loss_scaler]") {
  DynamicLossScaler s{LossScalerConfig{}};
  for (int i = 0; i < 999; ++i) s.update(false);
  CHECK(s.loss_scale() == 65536);
  s.update(false);  // cur_iter 999: 999 - (-1) = 1000
  CHECK(s.loss_scale() == 131072);
  CHECK(s.state() == LossScalerState{131072, 1000, -1, 2});
  // An overflow that only spends hysteresis still restarts the count: the
  // next doubling is 1000 clean updates after it (and refills the hysteresis).
  s.update(true);  // cur_iter 1000: hysteresis 2 → 1, scale kept
  CHECK(s.state() == LossScalerState{131072, 1001, 1000, 1});
  for (int i = 0; i < 999; ++i) s.update(false);
  CHECK(s.loss_scale() == 131072);
  s.update(false);
  CHECK(s.state() == LossScalerState{262144, 2001, 1000, 2});
}

TEST_CASE(
    "loss scaler: hysteresis 2 is used up before halving and refilled only when the "
    "scale grows; at the minimum, DeepSpeed's error",
    "[loss_scaler]") {
  DynamicLossScaler s(dyn(3, 3, 2, 2));  // 8, min 2
  run_trace(s, {
                   {O, 8, 1},  // iter 0: hysteresis 2 → 1, scale kept (step still skipped)
                   {C, 8, 1},  // iter 1: 1; hysteresis NOT refilled (not consecutive)
                   {C, 8, 1},  // iter 2: 2
                   {O, 4, 1},  // iter 3: hysteresis is 1 → halve; last = 3
                   {C, 4, 1},  // iter 4: 1
                   {O, 2, 1},  // iter 5: halve to max(2, 2) = the minimum
                   {C, 2, 1},  // iter 6: 1
                   {C, 2, 1},  // iter 7: 2
                   {C, 4, 2},  // iter 8: 3 → ×2 and hysteresis refilled to 2
                   {O, 4, 1},  // iter 9: hysteresis 2 → 1
                   {O, 2, 1},  // iter 10: halve to the minimum
               });
  const LossScalerState before = s.state();
  CHECK_THROWS_WITH(s.update(true),
                    Catch::Contains("Current loss scale already at minimum - cannot decrease "
                                    "scale anymore. Exiting run.") &&
                        Catch::Contains("fp16.min_loss_scale"));
  CHECK(s.state() == before);  // DeepSpeed raises before touching its state
}

TEST_CASE("loss scaler: consecutive_hysteresis refills on every clean step", "[loss_scaler]") {
  // The same flags, o c o c o o, with hysteresis 2 and window 3, from 8.
  SECTION("on: only back-to-back overflows halve") {
    DynamicLossScaler s(dyn(3, 3, 2, 1, true));
    run_trace(s, {
                     {O, 8, 1},  // iter 0: 2 → 1
                     {C, 8, 2},  // iter 1: refilled at once
                     {O, 8, 1},  // iter 2: 2 → 1 again, no halving
                     {C, 8, 2},  // iter 3
                     {O, 8, 1},  // iter 4
                     {O, 4, 1},  // iter 5: second in a row → halve; last = 5
                     {C, 4, 2},  // iter 6: 1
                     {C, 4, 2},  // iter 7: 2
                     {C, 8, 2},  // iter 8: 3 → ×2
                 });
  }
  SECTION("off: hysteresis, once used, stays used until the scale grows") {
    DynamicLossScaler s(dyn(3, 3, 2, 1, false));
    run_trace(s, {
                     {O, 8, 1},  // iter 0: 2 → 1
                     {C, 8, 1},  // iter 1
                     {O, 4, 1},  // iter 2: halve
                     {C, 4, 1},  // iter 3
                     {O, 2, 1},  // iter 4: halve
                     {O, 1, 1},  // iter 5: halve to the minimum 1
                 });
    CHECK_THROWS_WITH(s.update(true), Catch::Contains("already at minimum"));
  }
}

TEST_CASE(
    "loss scaler: a minimum that is not a power of two clamps; "
    "raise_error_at_min_scale=false keeps skipping",
    "[loss_scaler]") {
  LossScalerConfig c = dyn(2, 3, 1, 3);  // 4, min 3
  c.raise_error_at_min_scale = false;
  DynamicLossScaler s(c);
  run_trace(s, {{O, 3, 1}, {O, 3, 1}, {O, 3, 1}, {C, 3, 1}});
}

TEST_CASE("loss scaler: a static scale never changes, and an overflow still skips",
          "[loss_scaler]") {
  LossScalerConfig c;
  c.loss_scale = 128;
  auto s = make_loss_scaler(c);
  CHECK_FALSE(s->dynamic());
  for (int i = 0; i < 5; ++i) CHECK_FALSE(s->update(false));
  CHECK(s->update(true));
  CHECK(s->update(true));
  CHECK(s->loss_scale() == 128);
  CHECK(s->state().cur_iter == 7);
}

TEST_CASE("loss scaler: state() and load_state() resume the trace exactly", "[loss_scaler]") {
  const std::vector<bool> flags = {O, C, C, O, C, C, C, C, O, O, C, C, C, C, C, C, C};
  DynamicLossScaler straight(dyn(10, 3, 2, 1));
  for (bool f : flags) straight.update(f);
  DynamicLossScaler first(dyn(10, 3, 2, 1)), second(dyn(10, 3, 2, 1));
  for (size_t i = 0; i < 6; ++i) first.update(flags[i]);
  second.load_state(first.state());
  for (size_t i = 6; i < flags.size(); ++i) second.update(flags[i]);
  CHECK(second.state() == straight.state());
  // 1024 → 512 (iter 3, hysteresis used at 0) → 1024 (iter 6) → 512 (iters 8-9) → 1024
  // (iter 12) → 2048 (iter 15)
  CHECK(straight.loss_scale() == 2048);

  LossScalerState bad = straight.state();
  bad.cur_hysteresis = 3;
  CHECK_THROWS_WITH(second.load_state(bad),
                    Catch::Contains("cur_hysteresis 3") && Catch::Contains("fp16.hysteresis (2)"));
}

TEST_CASE("loss scaler: bad fp16 values are errors naming the key", "[loss_scaler][errors]") {
  LossScalerConfig c;
  c.loss_scale = -1;
  CHECK_THROWS_WITH(make_loss_scaler(c),
                    Catch::Contains("fp16.loss_scale (--loss-scale) must be 0 (dynamic loss "
                                    "scaling) or a static scale in [2^-40, 2^40]") &&
                        Catch::Contains("-1"));
  // A static scale outside [2^-40, 2^40]: 1e39 (inf in f32) skipped every
  // step, 1e-300 (0 in f32) made NaN; both bounds themselves are accepted.
  for (double bad :
       {1e39, 1e-300, 0x1p40 * 2, 0x1p-40 / 2, std::numeric_limits<double>::infinity()}) {
    INFO("loss_scale " << bad);
    c.loss_scale = bad;
    CHECK_THROWS_WITH(make_loss_scaler(c), Catch::Contains("fp16.loss_scale (--loss-scale)") &&
                                               Catch::Contains("[2^-40, 2^40]"));
  }
  for (double good : {0x1p40, 0x1p-40, 1000.0}) {
    c.loss_scale = good;
    CHECK(make_loss_scaler(c)->loss_scale() == good);
  }
  c.loss_scale = 1e39;
  CHECK_THROWS_WITH(make_loss_scaler(c), Catch::Contains("got 1e+39"));
  CHECK_THROWS_WITH(make_loss_scaler(dyn(16, 0, 2, 1)),
                    Catch::Contains("fp16.loss_scale_window must be > 0 when dynamic loss scaling "
                                    "is enabled (loss_scale=0)"));
  CHECK_THROWS_WITH(make_loss_scaler(dyn(16, 1000, 0, 1)), Catch::Contains("fp16.hysteresis"));
  CHECK_THROWS_WITH(make_loss_scaler(dyn(16, 1000, 2, 0)), Catch::Contains("fp16.min_loss_scale"));
  CHECK_THROWS_WITH(make_loss_scaler(dyn(200, 1000, 2, 1)),
                    Catch::Contains("fp16.initial_scale_power") && Catch::Contains("200"));
  CHECK_THROWS_WITH(
      make_loss_scaler(dyn(2, 1000, 2, 8)),
      Catch::Contains("fp16.initial_scale_power 2") && Catch::Contains("fp16.min_loss_scale 8"));
}

TEST_CASE("has_overflow: +inf, -inf and NaN in f32, f64, bf16 and f16", "[loss_scaler][overflow]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    INFO("dtype " << dtype_name(dt));
    // Large finite values (f16's largest, 65504) and subnormals are not overflow.
    const std::vector<double> finite = {0.0, -0.0, 1.5, -2.0, 65504.0, 6e-8, -3e-5};
    Tensor ok = from_vector(finite, {7}, dt);
    CHECK_FALSE(has_overflow({ok}));
    for (double bad : {inf, -inf, nan}) {
      INFO("bad value " << bad);
      std::vector<double> v = finite;
      v[4] = bad;
      CHECK(has_overflow({ok, from_vector(v, {7}, dt)}));
    }
  }
  // f16 overflows where f32 does not: 70000 rounds to inf in f16.
  CHECK(has_overflow({from_vector({70000.0}, {1}, DType::F16)}));
  CHECK_FALSE(has_overflow({from_vector({70000.0}, {1}, DType::BF16)}));
}

TEST_CASE("has_overflow: skips undefined grads, finds one inf in a large or strided tensor",
          "[loss_scaler][overflow]") {
  Tensor big = zeros({300000});
  CHECK_FALSE(has_overflow({Tensor(), big}));
  big.host_data<float>()[299999] = std::numeric_limits<float>::infinity();
  CHECK(has_overflow({Tensor(), big}));

  Tensor m = zeros({3, 4});
  m.host_data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(has_overflow({transpose(m, 0, 1)}));
  CHECK_THROWS_WITH(has_overflow({from_vector(std::vector<int32_t>{1}, {1})}),
                    Catch::Contains("has_overflow") && Catch::Contains("i32"));
}

TEST_CASE("unscale_and_clip: DeepSpeed's combined scale, from the norm of the scaled grads",
          "[loss_scaler][clip]") {
  const double ls = 8;
  auto scaled = [&] { return from_vector({3.0 * ls, 4.0 * ls}, {2}); };  // true norm 5
  const double norm = 5 * ls;                                            // of the scaled grads

  Tensor g = scaled();
  CHECK(unscale_and_clip({g}, ls, 0, norm) == ls);  // clip off: plain unscale
  CHECK(g.to_vector() == std::vector<double>{3, 4});

  g = scaled();
  CHECK(unscale_and_clip({g}, ls, 10, norm) == ls);  // (5 + 1e-6)/10 < 1: no clipping
  CHECK(g.to_vector() == std::vector<double>{3, 4});

  g = scaled();
  const double combined = unscale_and_clip({g, Tensor()}, ls, 1, norm);
  CHECK(combined == ls * (5 + 1e-6));
  const float inv = static_cast<float>(1.0 / combined);  // rounded once to f32, then multiplied
  CHECK(g.to_vector() == std::vector<double>{double(float(24) * inv), double(float(32) * inv)});
  const std::vector<double> c = g.to_vector();
  CHECK(std::fabs(std::sqrt(c[0] * c[0] + c[1] * c[1]) - 1.0) < 1e-6);  // clipped to norm 1

  CHECK_THROWS_WITH(unscale_and_clip({g}, ls, 1, std::numeric_limits<double>::infinity()),
                    Catch::Contains("skipped"));
  Tensor h = from_vector({1.0}, {1}, DType::BF16);
  CHECK_THROWS_WITH(unscale_and_clip({h}, ls, 1, 1),
                    Catch::Contains("f32") && Catch::Contains("bf16"));
  CHECK_THROWS_WITH(unscale_and_clip({g}, 0, 1, 1), Catch::Contains("loss_scale"));
}
