// Pipeline schedules as data: the three schedules run in the simulator with
// unit costs, deadlock-free under rendezvous sends, with the bubble of
// Narayanan et al. 2021 (§2.2) exactly and the activations in flight of each
// schedule exactly; broken schedules are caught naming stage and instruction.
#include <algorithm>
#include <string>

#include "parallel/pp/simulator.h"
#include "tensor/error.h"
#include "tests/catch_compat.h"

using namespace ms;
using namespace ms::pp;
using Catch::Contains;

namespace {

std::string compute_string(const std::vector<Instr>& list, int v = 1) {
  std::string out;
  for (const Instr& in : list)
    if (is_compute(in.op)) {
      if (!out.empty()) out += ' ';
      out += short_name(in, v);
    }
  return out;
}

int count(const std::vector<Instr>& list, Op op) {
  return static_cast<int>(
      std::count_if(list.begin(), list.end(), [&](const Instr& in) { return in.op == op; }));
}

}  // namespace

TEST_CASE("1F1B runs Megatron's order (p = 4, m = 8)", "[pp]") {
  // forward_backward_pipelining_without_interleaving, warm-up p − r − 1.
  Schedule s = make_schedule(ScheduleKind::kOneFOneB, 4, 8);
  CHECK(compute_string(s.steps[0]) == "F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7");
  CHECK(compute_string(s.steps[1]) == "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7");
  CHECK(compute_string(s.steps[2]) == "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7");
  CHECK(compute_string(s.steps[3]) == "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7");
  // The DeepSpeed vocabulary: loads on the first (inputs) and last (labels)
  // stage, sends and receives only towards existing neighbours, and the
  // step ends ReduceTiedGrads, ReduceGrads, OptimizerStep.
  for (int r = 0; r < 4; ++r) {
    const auto& l = s.steps[r];
    INFO("stage " << r);
    CHECK(count(l, Op::kLoadMicroBatch) == (r == 0 || r == 3 ? 8 : 0));
    CHECK(count(l, Op::kRecvActivation) == (r > 0 ? 8 : 0));
    CHECK(count(l, Op::kSendGrad) == (r > 0 ? 8 : 0));
    CHECK(count(l, Op::kSendActivation) == (r < 3 ? 8 : 0));
    CHECK(count(l, Op::kRecvGrad) == (r < 3 ? 8 : 0));
    REQUIRE(l.size() >= 3);
    CHECK(l[l.size() - 3].op == Op::kReduceTiedGrads);
    CHECK(l[l.size() - 2].op == Op::kReduceGrads);
    CHECK(l[l.size() - 1].op == Op::kOptimizerStep);
  }
}

TEST_CASE("GPipe and 1F1B: bubble (p − 1)/m and activations m vs min(p − r, m), exactly", "[pp]") {
  for (int p : {1, 2, 4})
    for (int m : {1, p, 2 * p + 1})
      for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::kOneFOneB}) {
        INFO(schedule_name(kind) << " p " << p << " m " << m);
        SimResult r = simulate(make_schedule(kind, p, m));
        // Narayanan et al. 2021: t_pb / t_id = (p − 1)(t_f + t_b) / (m(t_f + t_b)).
        CHECK(r.ideal == 3 * m);
        CHECK(r.makespan == 3 * (m + p - 1));
        CHECK(r.bubble == Rational::of(p - 1, m));
        CHECK(r.bubble == bubble_formula(kind, p, m, 1));
        for (int st = 0; st < p; ++st) {
          int want = kind == ScheduleKind::kGPipe ? m : std::min(p - st, m);
          CHECK(r.peak_in_flight[st] == want);
        }
      }
}

TEST_CASE("interleaved: bubble (p − 1)/(v·m) and Megatron's warm-up + 1 chunks in flight", "[pp]") {
  for (int p : {1, 2, 4})
    for (int v : {1, 2})
      for (int m : {p, 2 * p, 3 * p}) {  // the schedule needs m a multiple of p
        INFO("p " << p << " v " << v << " m " << m);
        SimResult r = simulate(make_schedule(ScheduleKind::kInterleaved, p, m, v));
        CHECK(r.ideal == 3 * m * v);  // a chunk-forward costs 1, a chunk-backward 2
        CHECK(r.bubble == Rational::of(p - 1, v * m));
        for (int st = 0; st < p; ++st) {
          // get_pp_rank_microbatches, written out: the warm-up forwards plus
          // the steady state's first forward are alive at once.
          int warmup = v == 1 ? p - st - 1 : 2 * (p - st - 1) + (v - 1) * p;
          CHECK(r.peak_in_flight[st] == std::min(warmup + 1, m * v));
        }
      }
  // With one chunk per rank it is 1F1B (Megatron's non-interleaved path).
  for (int p : {1, 2, 4})
    for (int m : {p, 3 * p}) CHECK(interleaved_order(p, m, 1) == one_f_one_b_order(p, m));
}

TEST_CASE("interleaved: Megatron's warm-up per stage, capped at m·v", "[pp]") {
  // forward_backward_pipelining_with_interleaving / get_pp_rank_microbatches:
  // (p − r − 1)·2 + (v − 1)·p. p = 4, v = 2: 6 + 4, 4 + 4, 2 + 4, 0 + 4.
  const int p = 4, v = 2;
  const std::vector<int> want{10, 8, 6, 4};
  for (int m : {8, 16}) {
    Schedule s = make_schedule(ScheduleKind::kInterleaved, p, m, v);
    for (int r = 0; r < p; ++r) {
      INFO("m " << m << " stage " << r);
      CHECK(interleaved_warmup(p, m, v, r) == want[r]);
      // Counted in the instruction list: the steady state opens with a
      // forward, so warm-up + 1 forwards precede the first backward.
      int forwards = 0;
      for (const Instr& in : s.steps[r]) {
        if (in.op == Op::kBackwardPass) break;
        forwards += in.op == Op::kForwardPass;
      }
      CHECK(forwards == want[r] + 1);
    }
  }
  // m = p: only m·v = 8 chunk-forwards exist, so rank 0 runs them all first.
  CHECK(interleaved_warmup(4, 4, 2, 0) == 8);
  CHECK(compute_string(make_schedule(ScheduleKind::kInterleaved, 4, 4, 2).steps[0], 2)
            .rfind("F0.0 F1.0 F2.0 F3.0 F0.1 F1.1 F2.1 F3.1 B0.1", 0) == 0);
  // Megatron refuses m not a multiple of p (a last group smaller than p).
  CHECK_THROWS_WITH(make_schedule(ScheduleKind::kInterleaved, 4, 10, 2),
                    Contains("(m = 10) to be a multiple of --pp (p = 4)"));
}

TEST_CASE("interleaved: Megatron's chunk order, v times the messages", "[pp]") {
  Schedule s = make_schedule(ScheduleKind::kInterleaved, 2, 4, 2);
  // Derived by hand from Megatron's algorithm, p = 2, m = 4, v = 2. The
  // schedule table (groups of p = 2 micro-batches per chunk) maps the k-th
  // forward, k = 0..7, to (mb, chunk) 0.0 1.0 0.1 1.1 2.0 3.0 2.1 3.1; the
  // k-th backward to the same micro-batch on chunk v − 1 − chunk: 0.1 1.1
  // 0.0 1.0 2.1 3.1 2.0 3.0. Warm-up: rank 0 (2 − 0 − 1)·2 + 2 = 4, rank 1
  // 0 + 2 = 2. Then steady state: forward w + k, backward k; then cool-down.
  CHECK(short_name(s.steps[0][0], 2) == "L0");  // a load has no chunk
  CHECK(short_name(s.steps[0][1], 2) == "F0.0");
  CHECK(compute_string(s.steps[0], 2) ==
        "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0");
  CHECK(compute_string(s.steps[1], 2) ==
        "F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 B3.0");
  // Each micro-batch crosses every rank boundary v times each way:
  // (p·v − 1) activation messages per micro-batch instead of p − 1.
  int sends = 0;
  for (const auto& l : s.steps) sends += count(l, Op::kSendActivation);
  CHECK(sends == 4 * (2 * 2 - 1));
}

TEST_CASE("interleaved: stage 0 holds 1 + (p − 1)/(p·v) times 1F1B's activations", "[pp]") {
  // Korthikanti et al. 2022, §4.2.3: the interleaved schedule's warm-up keeps
  // (1 + (p − 1)/(p·v)) times 1F1B's activations alive on the first stage.
  // Measured: the peak of live chunk-forwards, each 1/v of a stage's layers.
  for (int p : {2, 4, 8})
    for (int v : {2, 3, 4}) {
      const int m = 4 * p;
      INFO("p " << p << " v " << v);
      SimResult r = simulate(make_schedule(ScheduleKind::kInterleaved, p, m, v));
      CHECK(r.peak_in_flight[0] == (v + 1) * p - 1);
      CHECK(activation_factor_vs_1f1b(r, p, m, v, 0) == Rational::of(p * v + p - 1, p * v));
      SimResult one = simulate(make_schedule(ScheduleKind::kOneFOneB, p, m));
      CHECK(activation_factor_vs_1f1b(one, p, m, 1, 0) == Rational::of(1, 1));
    }
  // p = 4, v = 2: 11 chunks of 1/8 of the model against 1F1B's 4 quarters.
  SimResult r = simulate(make_schedule(ScheduleKind::kInterleaved, 4, 8, 2));
  CHECK(r.peak_in_flight == std::vector<int>{11, 9, 7, 5});
  CHECK(activation_factor_vs_1f1b(r, 4, 8, 2, 0) == Rational::of(11, 8));
}

TEST_CASE("schedules stay deadlock-free and exact beyond the required sizes", "[pp]") {
  for (int p : {3, 5, 8})
    for (int m : {1, p - 1, p, 2 * p, 3 * p + 2})
      for (ScheduleKind kind :
           {ScheduleKind::kGPipe, ScheduleKind::kOneFOneB, ScheduleKind::kInterleaved})
        for (int v : {1, 2, 4}) {
          if ((kind != ScheduleKind::kInterleaved && v > 1) ||
              (kind == ScheduleKind::kInterleaved && m % p != 0))
            continue;
          INFO(schedule_name(kind) << " p " << p << " m " << m << " v " << v);
          SimResult r = simulate(make_schedule(kind, p, m, v));
          CHECK(r.bubble == bubble_formula(kind, p, m, v));
          for (int st = 0; st < p; ++st)
            CHECK(r.peak_in_flight[st] == peak_formula(kind, p, m, v, st));
        }
}

TEST_CASE("bad sizes are errors naming the value", "[pp]") {
  CHECK_THROWS_WITH(make_schedule(ScheduleKind::kInterleaved, 4, 6, 2),
                    Contains("(m = 6) to be a multiple of --pp (p = 4)"));
  CHECK_THROWS_WITH(make_schedule(ScheduleKind::kOneFOneB, 0, 4),
                    Contains("--pp must be >= 1, got 0"));
  CHECK_THROWS_WITH(make_schedule(ScheduleKind::kGPipe, 2, 0),
                    Contains("--micro-batches must be >= 1, got 0"));
  CHECK_THROWS_WITH(make_schedule(ScheduleKind::kOneFOneB, 2, 4, 2),
                    Contains("--virtual-stages 2 needs --pipe-schedule interleaved"));
  CHECK_THROWS_WITH(parse_schedule_kind("pipedream"),
                    Contains("unknown schedule 'pipedream' (valid: gpipe, 1f1b, interleaved)"));
}

TEST_CASE("the simulator catches a warm-up one too long", "[pp]") {
  ComputeOrder o = one_f_one_b_order(4, 8);
  auto first_b = std::find_if(o[0].begin(), o[0].end(), [](const Work& w) { return w.backward; });
  std::iter_swap(first_b, first_b + 1);  // stage 0: F0..F3 F4 B0 instead of F0..F3 B0 F4
  Schedule s = build_schedule(ScheduleKind::kOneFOneB, 4, 8, 1, o);
  CHECK_THROWS_WITH(simulate(s),
                    Contains("stage 0 #13 ForwardPass(mb 4): 5 activations in flight") &&
                        Contains("min(p − r, m) = min(4 − 0, 8) = 4"));
  // The same order is fine if it does not claim to be 1F1B: GPipe allows m.
  s.kind = ScheduleKind::kGPipe;
  CHECK(simulate(s).peak_in_flight[0] == 5);
}

TEST_CASE("the simulator catches a missing send", "[pp]") {
  Schedule s = make_schedule(ScheduleKind::kOneFOneB, 4, 8);
  auto& l = s.steps[0];
  l.erase(std::find(l.begin(), l.end(), Instr{Op::kSendActivation, 2, 0}));
  CHECK_THROWS_WITH(simulate(s), Contains("deadlock") &&
                                     Contains("stage 1 #5 RecvActivation(mb 2) (stage 0 is at #10 "
                                              "SendActivation(mb 3))"));
  // A missing ReduceTiedGrads leaves its partner waiting too.
  Schedule t = make_schedule(ScheduleKind::kGPipe, 2, 2);
  t.steps[1].erase(t.steps[1].end() - 3);
  CHECK_THROWS_WITH(simulate(t),
                    Contains("stage 0 #10 ReduceTiedGrads() (stage 1 has finished its list)"));
}

TEST_CASE("the simulator catches sends ordered head to head", "[pp]") {
  // Send after compute, receive before compute: in 1F1B's steady state stage
  // 0 sends an activation while stage 1 sends a gradient, each waiting for
  // the other's receive (NVIDIA/nccl#479).
  Schedule s = build_schedule(ScheduleKind::kOneFOneB, 2, 3, 1, one_f_one_b_order(2, 3),
                              CommPlacement::kNaive);
  CHECK_THROWS_WITH(simulate(s),
                    Contains("deadlock: no stage can move; stage 0 #5 "
                             "SendActivation(mb 1) (stage 1 is at #4 SendGrad(mb 0))"));
  // Interleaved, the same placement closes a ring of sends through all ranks.
  Schedule i = build_schedule(ScheduleKind::kInterleaved, 4, 8, 2, interleaved_order(4, 8, 2),
                              CommPlacement::kNaive);
  CHECK_THROWS_WITH(simulate(i),
                    Contains("stage 3 #2 SendActivation(mb 0, chunk 0) (stage 0 is at"));
  // The paired placement of the same orders runs.
  CHECK_NOTHROW(
      simulate(build_schedule(ScheduleKind::kOneFOneB, 2, 3, 1, one_f_one_b_order(2, 3))));
}

TEST_CASE("the simulator catches wrong data flow", "[pp]") {
  Schedule s = make_schedule(ScheduleKind::kGPipe, 2, 2);
  Schedule dup = s;
  dup.steps[0].insert(dup.steps[0].begin() + 2, Instr{Op::kForwardPass, 0, 0});
  CHECK_THROWS_WITH(simulate(dup), Contains("stage 0 #2 ForwardPass(mb 0): forwarded twice"));
  Schedule noload = s;
  noload.steps[0].erase(noload.steps[0].begin());
  CHECK_THROWS_WITH(simulate(noload),
                    Contains("stage 0 #0 ForwardPass(mb 0): its input is not here"));
  Schedule nostep = s;
  nostep.steps[1].erase(nostep.steps[1].end() - 2);
  CHECK_THROWS_WITH(simulate(nostep), Contains("stage 1 #11 OptimizerStep(): before ReduceGrads"));
  ComputeOrder bad = gpipe_order(2, 2);
  std::swap(bad[1][0], bad[1][2]);  // a backward before its forward
  CHECK_THROWS_WITH(build_schedule(ScheduleKind::kGPipe, 2, 2, 1, bad),
                    Contains("stage 1 waits at work #0 BackwardPass(mb 0)"));
}

TEST_CASE("the bubble is the data dependencies'; rendezvous sends show their waiting", "[pp]") {
  // GPipe and 1F1B: every message finds both sides between computes, so
  // blocking sends cost nothing.
  for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::kOneFOneB}) {
    SimResult r = simulate(make_schedule(kind, 4, 8));
    CHECK(r.rendezvous_bubble == r.bubble);
    CHECK(r.rendezvous_makespan == r.makespan);
  }
  // Interleaved: Megatron's warm-up leaves some receivers mid-compute when
  // the data is ready; with rendezvous sends the sender waits (Megatron posts
  // isend/irecv in batches and does not).
  SimResult r = simulate(make_schedule(ScheduleKind::kInterleaved, 2, 4, 2));
  CHECK(r.bubble == Rational::of(1, 8));
  CHECK(r.rendezvous_bubble == Rational::of(5, 24));
  // A warm-up one longer than Megatron's breaks the memory bound.
  ComputeOrder o = interleaved_order(2, 4, 2);
  auto first_b = std::find_if(o[0].begin(), o[0].end(), [](const Work& w) { return w.backward; });
  std::iter_swap(first_b, first_b + 1);  // stage 0: one more forward before B0.1
  Schedule s = build_schedule(ScheduleKind::kInterleaved, 2, 4, 2, o);
  CHECK_THROWS_WITH(simulate(s), Contains("stage 0") && Contains("6 activations in flight") &&
                                     Contains("a warm-up too long?"));
  CHECK(simulate(s, false).peak_in_flight[0] == 6);
}
