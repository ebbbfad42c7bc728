// Lesson 11 grader, part 1: make_scaler and update_scale against the
// library's DynamicLossScaler (optim/loss_scaler.h, DeepSpeed's rule state
// for state) on scripted sequences of overflows, step by step. The first
// divergence is printed with the step, the event and both states, and — when
// the learner's whole trajectory so far follows one of the classic wrong
// rules, simulated here — that rule's name.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "lessons/11_mixed_precision/fp16_run.h"
#include "lessons/11_mixed_precision/lesson.h"
#include "lessons/lesson_check.h"

namespace lesson11 {

using namespace ms;
using lesson::fail;
using lesson::pass;

inline std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

struct State {
  double scale = 0;
  int hysteresis = 0;
  int64_t iter = 0, last = 0;
  bool skipped = false;
  std::string error;  // non-empty: update_scale threw this
  // strict: the iteration counters too; else the scale and hysteresis alone.
  bool same(const State& o, bool strict) const {
    if (error.empty() != o.error.empty()) return false;
    return !error.empty() || (scale == o.scale && hysteresis == o.hysteresis &&
                              (!strict || (iter == o.iter && last == o.last)));
  }
  std::string str() const {
    if (!error.empty()) return "an ms::Error: " + error;
    return str_cat("scale ", num(scale), ", hysteresis ", hysteresis, " (cur_iter ", iter,
                   ", last_overflow_iter ", last, ")");
  }
};

// A learner's rule that is plausible and wrong, simulated, so a divergence
// can be named.
enum class Bug {
  None,
  NoHysteresis,
  WindowFromStart,
  RefillEveryClean,
  NoRefillOnDouble,
  RefillOnHalve,
  DoubleOneLate,
  LastOnlyOnHalve,
  NoFloor,
  NoErrorAtMin,
  ErrorBeforeMin,
};

struct BugInfo {
  Bug bug;
  const char* diagnosis;
};
inline const BugInfo kBugs[] = {
    {Bug::NoHysteresis,
     "You halved the scale while hysteresis was left. DeepSpeed first spends the hysteresis "
     "(cur_hysteresis -= 1; the scale stays; the step is still skipped) and halves only once "
     "cur_hysteresis is 1: one bad batch does not cost half the scale."},
    {Bug::WindowFromStart,
     "You counted the window from the start of training: you doubled when cur_iter + 1 was a "
     "multiple of loss_scale_window, whatever overflowed since. The window counts clean steps "
     "since the LAST OVERFLOW: double when (cur_iter - last_overflow_iter) % loss_scale_window "
     "== 0."},
    {Bug::RefillEveryClean,
     "You refilled cur_hysteresis on a clean step that did not double. That is "
     "consecutive_hysteresis = true; DeepSpeed's default refills it only when the scale doubles."},
    {Bug::NoRefillOnDouble,
     "You doubled the scale without refilling cur_hysteresis: DeepSpeed sets cur_hysteresis = "
     "hysteresis when it doubles."},
    {Bug::RefillOnHalve,
     "You refilled cur_hysteresis when halving. DeepSpeed leaves it used up (1), so a second "
     "overflow "
     "in a row halves again; only doubling refills it."},
    {Bug::DoubleOneLate,
     "You doubled one step late, on the (loss_scale_window+1)-th clean step in a row. That is "
     "FP16_Optimizer._update_scale (deepspeed/runtime/fp16/fused_optimizer.py, the non-ZeRO fp16 "
     "optimizer, which has no hysteresis): stable = cur_iter - last_overflow_iter - 1. The "
     "DynamicLossScaler ZeRO uses (fp16/loss_scaler.py, update_scale) doubles when (cur_iter - "
     "last_overflow_iter) % loss_scale_window == 0: the difference counts THIS clean step, so the "
     "doubling comes on the window-th clean step after an overflow (the start counts as an "
     "overflow at -1)."},
    {Bug::LastOnlyOnHalve,
     "You did not record last_overflow_iter on an overflow that only spent hysteresis. Every "
     "overflow restarts the count of clean steps."},
    {Bug::NoFloor,
     "You let the scale go below min_loss_scale: halve to max(scale / 2, min_loss_scale)."},
    {Bug::NoErrorAtMin,
     "You stayed at min_loss_scale silently. An overflow with the scale already at the minimum "
     "(hysteresis used up) must throw "
     "DeepSpeed's \"Current loss scale already at minimum - cannot decrease scale anymore. "
     "Exiting run.\" (raise_error_at_min_scale, true by default): staying at the minimum "
     "silently skips every step from then on."},
    {Bug::ErrorBeforeMin,
     "You threw before the scale reached min_loss_scale. Halving clamps (max(scale / 2, "
     "min_loss_scale)); DeepSpeed raises only when the scale is ALREADY at the minimum."},
};

inline std::vector<State> simulate(const Fp16Config& c, const std::string& events, Bug bug) {
  State s;
  s.scale = std::ldexp(1.0, c.initial_scale_power);
  s.hysteresis = c.hysteresis;
  s.last = -1;
  std::vector<State> out;
  for (char e : events) {
    const bool overflow = e == 'O';
    if (overflow) {
      if (c.hysteresis == 1 || s.hysteresis == 1 || bug == Bug::NoHysteresis) {
        const bool at_min = bug == Bug::ErrorBeforeMin ? s.scale / 2 < c.min_loss_scale
                                                       : s.scale == c.min_loss_scale;
        if (at_min && bug != Bug::NoErrorAtMin && bug != Bug::NoFloor) {
          s.error = "(error)";
          out.push_back(s);
          return out;
        }
        s.scale = bug == Bug::NoFloor ? s.scale / 2 : std::max(s.scale / 2, c.min_loss_scale);
        if (bug == Bug::RefillOnHalve) s.hysteresis = c.hysteresis;
        s.last = s.iter;
      } else {
        --s.hysteresis;
        if (bug != Bug::LastOnlyOnHalve) s.last = s.iter;
      }
    } else {
      if (bug == Bug::RefillEveryClean) s.hysteresis = c.hysteresis;
      // Clean steps in a row, this one included (>= 1 on a clean step).
      int64_t since = s.iter - s.last;
      if (bug == Bug::WindowFromStart) since = s.iter + 1;  // last_overflow_iter kept at -1
      if (bug == Bug::DoubleOneLate) since -= 1;            // FP16_Optimizer's stable
      if (since > 0 && since % c.loss_scale_window == 0) {
        if (bug != Bug::NoRefillOnDouble) s.hysteresis = c.hysteresis;
        s.scale *= 2;
      }
    }
    ++s.iter;
    s.skipped = overflow;
    out.push_back(s);
  }
  return out;
}

// The library's DynamicLossScaler on the same events.
inline std::vector<State> reference(const Fp16Config& c, const std::string& events) {
  DynamicLossScaler ref(
      library_config(c.initial_scale_power, c.loss_scale_window, c.hysteresis, c.min_loss_scale));
  std::vector<State> out;
  for (char e : events) {
    State s;
    try {
      s.skipped = ref.update(e == 'O');
    } catch (const Error& err) {
      s.error = err.what();
      out.push_back(s);
      return out;
    }
    const LossScalerState st = ref.state();
    s.scale = st.scale, s.hysteresis = st.cur_hysteresis;
    s.iter = st.cur_iter, s.last = st.last_overflow_iter;
    out.push_back(s);
  }
  return out;
}

inline std::vector<State> learner(const Fp16Config& c, const std::string& events) {
  MyScaler m = make_scaler(c);
  std::vector<State> out;
  for (char e : events) {
    State s;
    try {
      s.skipped = update_scale(m, e == 'O');
    } catch (const Error& err) {
      if (std::string(err.what()).rfind("TODO", 0) == 0) throw;
      s.error = err.what();
      out.push_back(s);
      return out;
    }
    s.scale = m.cur_scale, s.hysteresis = m.cur_hysteresis;
    s.iter = m.cur_iter, s.last = m.last_overflow_iter;
    out.push_back(s);
  }
  return out;
}

struct Trace {
  const char* name;
  Fp16Config config;
  std::string events;  // O: the step's gradients overflowed; C: clean
};

inline void check_trace(const Trace& t) {
  const std::vector<State> want = reference(t.config, t.events), got = learner(t.config, t.events);
  const Fp16Config& c = t.config;
  for (size_t k = 0; k < want.size(); ++k) {
    const State& w = want[k];
    const bool threw_ok =
        !w.error.empty() && k < got.size() && !got[k].error.empty() &&
        got[k].error.find("Current loss scale already at minimum") != std::string::npos;
    bool ok = k < got.size() &&
              (w.error.empty() ? got[k].error.empty() && got[k].scale == w.scale &&
                                     got[k].hysteresis == w.hysteresis && got[k].iter == w.iter &&
                                     got[k].last == w.last && got[k].skipped == w.skipped
                               : threw_ok);
    if (ok) continue;
    std::string why =
        str_cat("trace \"", t.name, "\" (initial_scale_power ", c.initial_scale_power,
                ", loss_scale_window ", c.loss_scale_window, ", hysteresis ", c.hysteresis,
                ", min_loss_scale ", num(c.min_loss_scale), "), events ", t.events.substr(0, k),
                "[", t.events[k], "]", t.events.substr(k + 1), "\n  first divergence at step ", k,
                " (", t.events[k] == 'O' ? "overflow" : "clean", "):\n    expected ",
                w.error.empty() ? w.str()
                                : "DeepSpeed's error \"Current loss scale already at minimum - "
                                  "cannot decrease scale anymore. Exiting run.\"",
                "\n    got      ", got[k].str());
    if (w.error.empty() && got[k].error.empty() && got[k].skipped != w.skipped)
      why += str_cat("\n  update_scale must return whether the step is skipped: ", w.skipped);
    // Which wrong rule has the learner followed, all the way to here? First
    // counting the counters too (they tell some rules apart), then without
    // (a learner's rule may keep them its own way).
    const char* diagnosis = nullptr;
    for (bool strict : {true, false})
      for (const BugInfo& b : kBugs) {
        const std::vector<State> sim = simulate(c, t.events, b.bug);
        bool follows = !diagnosis && sim.size() > k;
        for (size_t i = 0; follows && i <= k; ++i) follows = sim[i].same(got[i], strict);
        if (follows) diagnosis = b.diagnosis;
      }
    if (diagnosis) why += str_cat("\n  ", diagnosis);
    fail(why);
  }
}

inline void check_scaler() {
  const MyScaler s = make_scaler(Fp16Config{});
  if (s.cur_scale != 65536 || s.cur_hysteresis != 2 || s.cur_iter != 0 ||
      s.last_overflow_iter != -1)
    fail(str_cat("make_scaler(DeepSpeed's defaults) gave cur_scale ", num(s.cur_scale),
                 ", cur_hysteresis ", s.cur_hysteresis, ", cur_iter ", s.cur_iter,
                 ", last_overflow_iter ", s.last_overflow_iter,
                 "; expected 2^16 = 65536, 2, 0, -1"));
  pass("make_scaler: DeepSpeed's defaults start at 2^16 = 65536 with hysteresis 2");
  const Trace traces[] = {
      // Doublings at 2 and 5; hysteresis spent at 7; halve at 10; double and
      // refill at 13; spend at 15; halve at 17 and again at 18; double at 21.
      {"window and hysteresis", {4, 3, 2, 1}, "CCCCCCCOCCOCCCCOCOOCCCC"},
      // Hysteresis 3: overflows between clean steps must still add up.
      {"hysteresis 3", {6, 4, 3, 1}, "OCOCOCCCCCOO"},
      // The floor: 8 -> 4 -> 3 (clamped), then DeepSpeed's error.
      {"the floor", {3, 100, 1, 3}, "OOO"},
      // At the minimum with hysteresis left: spend it first, then the error.
      {"hysteresis at the floor", {0, 100, 2, 1}, "COCO"},
  };
  for (const Trace& t : traces) {
    check_trace(t);
    pass(str_cat("update_scale follows DynamicLossScaler on \"", t.name, "\" (", t.events, ")"));
  }
}

}  // namespace lesson11
