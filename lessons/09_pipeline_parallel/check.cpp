// Lesson 09 grader (one process): my_one_f_one_b_order for p ∈ {1, 2, 4}
// stages and m ∈ {1, p, 2p + 1} micro-batches. The library turns the learner's
// compute order into instruction lists (build_schedule adds the loads and the
// sends/receives) and runs them in its simulator (unit costs: forward 1,
// backward 2, messages 0; blocking sends). What the simulator MEASURED — the
// step's time, the bubble, each stage's peak activations in flight — is
// printed beside the formulas of Narayanan et al. 2021 (§2.2), and a mismatch
// is traced back to the classic mistakes: a circular wait (deadlock), a
// warm-up one too long or too short or not capped at m, GPipe's
// all-forwards-first memory, a micro-batch forwarded twice or never
// backwarded, backwards newest-first. Each has a case in wrong/.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "lessons/09_pipeline_parallel/lesson.h"
#include "lessons/lesson_check.h"
#include "parallel/pp/simulator.h"

using ms::Error;
using ms::str_cat;
using namespace ms::pp;
using ms::lesson::fail;
using ms::lesson::pass;

namespace {

std::string work_str(const Work& w) {
  std::string s(1, w.backward ? 'B' : 'F');
  s += std::to_string(w.micro_batch);
  return s;
}
std::string list_str(const std::vector<Work>& l) {
  std::string s;
  for (const Work& w : l) {
    if (!s.empty()) s += ' ';
    s += work_str(w);
  }
  return s.empty() ? "(empty)" : s;
}
void print_order(const ComputeOrder& o, const char* title) {
  std::printf("  %s\n", title);
  for (size_t r = 0; r < o.size(); ++r)
    std::printf("    stage %zu: %s\n", r, list_str(o[r]).c_str());
}
std::string ints_str(const std::vector<int>& v) {
  std::string s;
  for (int x : v) {
    s += s.empty() ? '[' : ' ';
    s += std::to_string(x);
  }
  return s.empty() ? "[]" : s + ']';
}

// Forwards stage r runs before its first backward: 1F1B's warm-up
// min(p − r − 1, m) plus the steady state's first forward, i.e. min(p − r, m).
int forwards_first(const std::vector<Work>& l) {
  int n = 0;
  for (const Work& w : l) {
    if (w.backward) break;
    ++n;
  }
  return n;
}
int want_first(int p, int m, int r) {
  return std::min(p - r, m);
}

// ---- 1. every micro-batch forwarded and backwarded once per stage ----
std::string check_shape(const ComputeOrder& o, int p, int m) {
  if (static_cast<int>(o.size()) != p)
    return str_cat("returned ", o.size(), " stage lists for p = ", p, ": one list per stage");
  for (int r = 0; r < p; ++r) {
    std::vector<int> fwd(m, -1), bwd(m, -1);
    for (size_t i = 0; i < o[r].size(); ++i) {
      const Work& w = o[r][i];
      if (w.micro_batch < 0 || w.micro_batch >= m)
        return str_cat("stage ", r, " work #", i, " names micro-batch ", w.micro_batch,
                       "; micro-batches are 0 .. m − 1 = ", m - 1,
                       w.micro_batch >= m ? " (a warm-up longer than m? 1F1B's is "
                                            "min(p − r − 1, m): with few micro-batches every "
                                            "forward is warm-up)"
                                          : "");
      if (w.chunk != 0)
        return str_cat("stage ", r, " work #", i, " has chunk ", w.chunk,
                       "; 1F1B holds one model chunk per stage: leave chunk = 0");
      std::vector<int>& seen = w.backward ? bwd : fwd;
      if (seen[w.micro_batch] >= 0)
        return str_cat("stage ", r, " runs ", work_str(w), " twice (work #", seen[w.micro_batch],
                       " and #", i, "): micro-batch ", w.micro_batch,
                       w.backward ? " backwarded" : " forwarded",
                       " twice. Each micro-batch goes through each stage's ",
                       w.backward ? "backward" : "forward", " exactly once",
                       w.backward ? "."
                                  : " (does the steady state start again from micro-batch 0 "
                                    "instead of going on after the warm-up?)");
      if (w.backward && fwd[w.micro_batch] < 0)
        return str_cat("stage ", r, " runs B", w.micro_batch, " (work #", i,
                       ") before its forward F", w.micro_batch,
                       ": a backward needs the activations its forward saved");
      seen[w.micro_batch] = static_cast<int>(i);
    }
    for (int k = 0; k < m; ++k) {
      if (fwd[k] < 0)
        return str_cat("stage ", r, " never forwards micro-batch ", k,
                       ": every stage runs every micro-batch's forward once");
      if (bwd[k] < 0)
        return str_cat("stage ", r, " never backwards micro-batch ", k,
                       ": its activations stay held and its gradient never reaches the weights",
                       r > 0 ? str_cat(" or stage ", r - 1, ", which waits for it") : "",
                       ". After the last forward come the backwards still owed (the cool-down): "
                       "is it missing?");
    }
  }
  return "";
}

// ---- 2. a circular wait between the stages (deadlock) ----
// Runs the compute orders with unlimited buffers (as soon as a forward's
// activation or a backward's gradient exists, its consumer may use it): the
// stages left waiting wait on each other in a circle that no placement of
// the messages can break.
std::string check_deadlock(const ComputeOrder& o, int p, int m) {
  std::vector<std::vector<char>> fdone(p, std::vector<char>(m, 0)), bdone = fdone;
  std::vector<size_t> next(p, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r)
      for (; next[r] < o[r].size(); ++next[r]) {
        const Work& w = o[r][next[r]];
        const bool ready = w.backward ? r == p - 1 || bdone[r + 1][w.micro_batch]
                                      : r == 0 || fdone[r - 1][w.micro_batch];
        if (!ready) break;
        (w.backward ? bdone : fdone)[r][w.micro_batch] = 1;
        progress = true;
      }
  }
  std::string why;
  for (int r = 0; r < p; ++r) {
    if (next[r] == o[r].size()) continue;
    const Work& w = o[r][next[r]];
    why += str_cat("\n    stage ", r, " waits at work #", next[r], " ", work_str(w),
                   " for micro-batch ", w.micro_batch,
                   w.backward ? "'s gradient from stage " : "'s activation from stage ",
                   w.backward ? r + 1 : r - 1);
  }
  if (why.empty()) return "";
  why = "deadlock: no stage can move." + why +
        "\n  Each waits on a stage that waits on it: no order of sends and receives can "
        "break that circle.";
  // The usual cause: a later stage runs more forwards before its first
  // backward than an earlier one, so the earlier stage is already waiting for
  // a gradient when the later one needs its next activation.
  for (int r = 0; r + 1 < p; ++r) {
    const int a = forwards_first(o[r]), b = forwards_first(o[r + 1]);
    if (a < b)
      return why +
             str_cat("\n  Stage ", r, " runs ", a, " forward(s) before its first backward, ",
                     "stage ", r + 1, " runs ", b,
                     ": stage r must run at least as many as stage r + 1 — 1F1B's warm-up "
                     "min(p − r − 1, m) shrinks along the pipe (counted from the wrong end?).");
  }
  return why;
}

// ---- 3. what the simulator measured, against the formulas ----
std::string diagnose(const ComputeOrder& o, const SimResult& res, int p, int m) {
  const Rational formula = bubble_formula(ScheduleKind::kOneFOneB, p, m, 1);
  std::vector<int> want(p);
  for (int r = 0; r < p; ++r) want[r] = want_first(p, m, r);
  const std::string measured =
      str_cat("measured bubble ", res.bubble.str(), " (formula (p − 1)/m = ", formula.str(),
              "), peak activations per stage ", ints_str(res.peak_in_flight),
              " (formula min(p − r, m): ", ints_str(want), ")");
  // GPipe: every stage forwards all m micro-batches before any backward.
  bool all_first = true;
  for (int r = 0; r < p; ++r) all_first = all_first && forwards_first(o[r]) == m;
  if (all_first && res.peak_in_flight != want)
    return str_cat(
        "GPipe-shaped memory: every stage runs all m = ", m,
        " forwards before its first backward, so each holds m micro-batches' activations at the "
        "turn; 1F1B starts backward as soon as the first gradient can come back and holds only "
        "min(p − r, m). Same bubble, (p − 1)/m, so the time is no better — only the memory is "
        "worse: ",
        measured);
  for (int r = 0; r < p; ++r) {
    const int got = forwards_first(o[r]), w = want[r];
    if (got == w) continue;
    const int d = got - w;
    const std::string size = d == 1    ? "one too many"
                             : d == -1 ? "one too few"
                                       : str_cat(d > 0 ? d : -d, d > 0 ? " too many" : " too few");
    return str_cat(
        "warm-up ", size, ": stage ", r, " runs ", got, " forward(s) before its first backward; ",
        "1F1B runs min(p − r, m) = ", w,
        " (the warm-up min(p − r − 1, m) = ", std::min(p - r - 1, m),
        ", then the steady state's first forward). ",
        d > 0 ? "Each extra forward holds one more micro-batch's activations: "
              : "Starting backward before the gradient can come back leaves the stage waiting for "
                "it, idle: ",
        measured);
  }
  for (int r = 0; r < p; ++r) {
    std::vector<int> f, b;
    for (const Work& w : o[r]) (w.backward ? b : f).push_back(w.micro_batch);
    if (f != b)
      return str_cat("backwards in the wrong order: stage ", r, " forwards micro-batches ",
                     ints_str(f), " but backwards them ", ints_str(b),
                     ". 1F1B backwards the OLDEST micro-batch in flight (first in, first out): ",
                     "the next stage returns gradients in that order, and the oldest activations ",
                     "are the ones to free. ", measured);
  }
  if (res.bubble == formula && res.peak_in_flight == want) return "";
  // Right warm-up and order of backwards, yet not 1F1B: name the first place
  // the stage strays from one forward, one backward.
  const ComputeOrder ref = one_f_one_b_order(p, m);
  for (int r = 0; r < p; ++r)
    for (size_t i = 0; i < o[r].size(); ++i)
      if (!(o[r][i] == ref[r][i]))
        return str_cat("stage ", r, " strays from one forward, one backward at work #", i, " (",
                       work_str(o[r][i]), "): ", measured);
  return measured;
}

// One character per time unit: a forward (1 unit) shows its micro-batch as a
// digit, a backward (2 units) as two letters (a = micro-batch 0), idle '.'.
void print_timeline(const SimResult& res) {
  for (size_t r = 0; r < res.timeline.size(); ++r) {
    std::string row(static_cast<size_t>(res.makespan), '.');
    for (const Span& s : res.timeline[r]) {
      if (!is_compute(s.instr.op)) continue;
      const char c = s.instr.op == Op::kForwardPass ? char('0' + s.instr.micro_batch % 10)
                                                    : char('a' + s.instr.micro_batch % 26);
      for (int64_t t = s.start; t < s.end; ++t) row[static_cast<size_t>(t)] = c;
    }
    std::printf("    stage %zu |%s|\n", r, row.c_str());
  }
}

void check_case(int p, int m) {
  const std::string what = str_cat("p = ", p, ", m = ", m);
  const ComputeOrder o = my_one_f_one_b_order(p, m);
  std::string why = check_shape(o, p, m);
  if (why.empty()) why = check_deadlock(o, p, m);
  if (!why.empty()) {
    if (static_cast<int>(o.size()) == p) print_order(o, "your compute order:");
    fail(str_cat(what, ": ", why));
  }
  SimResult res;
  try {
    res = simulate(build_schedule(ScheduleKind::kOneFOneB, p, m, 1, o), false);
  } catch (const Error& e) {
    print_order(o, "your compute order:");
    fail(str_cat(what, ": the library rejected your schedule: ", e.what()));
  }
  std::vector<int> want(p);
  for (int r = 0; r < p; ++r) want[r] = want_first(p, m, r);
  std::printf(
      "  %s: simulated time %lld (ideal m·(1 + 2) = %lld), bubble %s (formula (p − 1)/m = "
      "%s); peak activations per stage %s (formula min(p − r, m): %s)\n",
      what.c_str(), static_cast<long long>(res.makespan), static_cast<long long>(res.ideal),
      res.bubble.str().c_str(), bubble_formula(ScheduleKind::kOneFOneB, p, m, 1).str().c_str(),
      ints_str(res.peak_in_flight).c_str(), ints_str(want).c_str());
  why = diagnose(o, res, p, m);
  if (!why.empty()) {
    print_order(o, "your compute order:");
    std::printf(
        "  simulated timeline (digit: forward of that micro-batch, 1 unit; letters: its "
        "backward, 2 units, a = 0; '.' idle):\n");
    print_timeline(res);
    fail(str_cat(what, ": ", why));
  }
  pass(str_cat(what, ": 1F1B's bubble and memory, measured"));
}

// After a PASS: what the library added to the compute order, and what the
// schedule buys, each measured by the same simulator.
void after_pass() {
  const int p = 4, m = 8;
  const ComputeOrder mine = my_one_f_one_b_order(p, m);
  SimResult res;
  try {  // the cases above passed; an order that breaks only at m = 8 is still named
    res = simulate(build_schedule(ScheduleKind::kOneFOneB, p, m, 1, mine));
  } catch (const Error& e) {
    print_order(mine, "your compute order:");
    fail(str_cat("p = 4, m = 8: the library rejected your schedule: ", e.what()));
  }
  std::printf(
      "\nyour schedule at p = 4, m = 8, simulated (digit: forward of that micro-batch; "
      "letters: its backward, a = 0; '.' idle — the bubble):\n");
  print_timeline(res);
  const SimResult gp = simulate(make_schedule(ScheduleKind::kGPipe, p, m));
  std::printf(
      "  GPipe's order (the library's gpipe_order), same p and m: time %lld, bubble %s, "
      "peak activations per stage %s against your %s\n",
      static_cast<long long>(gp.makespan), gp.bubble.str().c_str(),
      ints_str(gp.peak_in_flight).c_str(), ints_str(res.peak_in_flight).c_str());
  const Schedule s = build_schedule(ScheduleKind::kOneFOneB, p, m, 1, mine);
  std::string line;
  for (const Instr& in : s.steps[1]) {
    if (!line.empty()) line += ' ';
    line += short_name(in, 1);
  }
  std::printf(
      "  stage 1 after build_schedule added the messages (rA/sA Recv/SendActivation, "
      "rG/sG Recv/SendGrad, RT RG OS the step's end):\n    %s\n",
      line.c_str());
  try {
    simulate(build_schedule(ScheduleKind::kOneFOneB, p, m, 1, mine, CommPlacement::kNaive));
    std::printf("  with each send right after its compute and each receive right before: runs\n");
  } catch (const Error& e) {
    std::printf(
        "  the same order with each send right after its compute and each receive right "
        "before it (CommPlacement::kNaive), simulated with blocking sends:\n    %s\n",
        e.what());
  }
}

}  // namespace

int main() {
  return ms::lesson::run_checks([] {
    std::printf(
        "my_one_f_one_b_order, run by the library's simulator (parallel/pp/simulator.h): "
        "unit costs forward 1, backward 2, messages 0, blocking sends placed by "
        "build_schedule\n");
    for (int p : {1, 2, 4}) {
      std::vector<int> ms_ = {1, p, 2 * p + 1};
      std::sort(ms_.begin(), ms_.end());
      ms_.erase(std::unique(ms_.begin(), ms_.end()), ms_.end());
      for (int m : ms_) check_case(p, m);
    }
    after_pass();
  });
}
