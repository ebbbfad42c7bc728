// The schedule simulator (see simulator.h). Each stage has a program counter
// and a clock; a sweep advances every stage as far as it can, a send
// completing only when its receiver's current instruction is the matching
// receive (both then finish at the later of the two clocks). The times do not
// depend on the sweep order: every cross-stage dependency is a matched pair.
#include "parallel/pp/simulator.h"

#include <algorithm>
#include <numeric>

#include "tensor/error.h"

namespace ms::pp {

Rational Rational::of(int64_t num, int64_t den) {
  MS_ASSERT(den != 0, "Rational with zero denominator");
  if (den < 0) num = -num, den = -den;
  int64_t g = std::gcd(num, den);
  return {num / g, den / g};
}

std::string Rational::str() const {
  return den == 1 ? std::to_string(num) : std::to_string(num) + "/" + std::to_string(den);
}

Rational bubble_formula(ScheduleKind kind, int p, int m, int v) {
  return Rational::of(p - 1,
                      static_cast<int64_t>(m) * (kind == ScheduleKind::kInterleaved ? v : 1));
}

int peak_formula(ScheduleKind kind, int p, int m, int v, int r) {
  switch (kind) {
    case ScheduleKind::kGPipe:
      return m;
    case ScheduleKind::kOneFOneB:
      return std::min(p - r, m);
    case ScheduleKind::kInterleaved:
      return std::min(interleaved_warmup(p, m, v, r) + 1, m * v);
  }
  return 0;
}

Rational activation_factor_vs_1f1b(const SimResult& r, int p, int m, int v, int stage) {
  return Rational::of(r.peak_in_flight.at(stage), static_cast<int64_t>(v) * std::min(p - stage, m));
}

std::string peak_formula_text(ScheduleKind kind, int p, int m, int v, int r) {
  int got = peak_formula(kind, p, m, v, r);
  switch (kind) {
    case ScheduleKind::kGPipe:
      return str_cat("m = ", got);
    case ScheduleKind::kOneFOneB:
      return str_cat("min(p − r, m) = min(", p, " − ", r, ", ", m, ") = ", got);
    case ScheduleKind::kInterleaved:
      return str_cat("min(w + 1, m·v) = min(", interleaved_warmup(p, m, v, r) + 1, ", ", m * v,
                     ") = ", got, ", w = (p − r − 1)·2 + (v − 1)·p (Megatron)");
  }
  return "";
}

namespace {

struct StageState {
  size_t pc = 0;
  int64_t clock = 0;
  int in_flight = 0, peak = 0;
  bool reduced = false, stepped = false;
  // [chunk * m + mb]
  std::vector<char> loaded, fwd, bwd, got_act, got_grad;
  // Buffered sends: when the message addressed to this stage was posted, −1 before.
  std::vector<int64_t> posted_act, posted_grad;
};

// One run of the lists. rendezvous: a send completes only when its receiver
// sits at the matching receive (the deadlock check); otherwise a send is
// posted and the stage moves on, its receiver taking the message at the later
// of the two clocks (the timing of the data dependencies).
SimResult run(const Schedule& s, bool check_memory_bound, bool rendezvous) {
  const int p = s.stages, m = s.micro_batches, v = s.virtual_stages;
  MS_CHECK(static_cast<int>(s.steps.size()) == p, "simulate: schedule has ", s.steps.size(),
           " instruction lists for ", p, " stages");
  std::vector<StageState> st(p);
  for (auto& x : st) {
    x.fwd.assign(static_cast<size_t>(m) * v, 0);
    x.loaded = x.bwd = x.got_act = x.got_grad = x.fwd;
    x.posted_act.assign(x.fwd.size(), -1);
    x.posted_grad = x.posted_act;
  }
  SimResult res;
  res.timeline.resize(p);
  auto where = [&](int r) {
    return str_cat("stage ", r, " #", st[r].pc, " ", describe(s.steps[r][st[r].pc], v));
  };
  auto finish = [&](int r, int64_t start, int64_t end) {
    res.timeline[r].push_back({static_cast<int>(st[r].pc), s.steps[r][st[r].pc], start, end});
    st[r].clock = end;
    ++st[r].pc;
  };
  auto at = [&](int r) -> const Instr* {
    return st[r].pc < s.steps[r].size() ? &s.steps[r][st[r].pc] : nullptr;
  };

  // Runs stage r's instruction if it can; false if it must wait for a peer.
  auto step = [&](int r) -> bool {
    StageState& x = st[r];
    const Instr& in = s.steps[r][x.pc];
    const int mb = in.micro_batch, c = in.chunk;
    if (mb >= 0)
      MS_CHECK(mb < m && c >= 0 && c < v, where(r), ": micro-batch or chunk out of range (m = ", m,
               ", v = ", v, ")");
    const size_t k = static_cast<size_t>(c) * m + (mb < 0 ? 0 : mb);
    const bool first = is_first_virtual(s, r, c), last = is_last_virtual(s, r, c);
    switch (in.op) {
      case Op::kLoadMicroBatch:
        MS_CHECK(!x.loaded[mb], where(r), ": micro-batch loaded twice");
        x.loaded[mb] = 1;
        finish(r, x.clock, x.clock);
        return true;
      case Op::kForwardPass: {
        MS_CHECK(!x.fwd[k], where(r), ": forwarded twice");
        bool input = first                             ? x.loaded[mb]
                     : prev_virtual(p, r, c).rank == r ? x.fwd[k - m]
                                                       : x.got_act[k];
        MS_CHECK(input, where(r), ": its input is not here (no ",
                 first ? "LoadMicroBatch" : "RecvActivation", " of it before)");
        MS_CHECK(!last || x.loaded[mb], where(r),
                 ": the last stage has no labels (no LoadMicroBatch)");
        x.fwd[k] = 1;
        x.peak = std::max(x.peak, ++x.in_flight);
        int bound = peak_formula(s.kind, p, m, v, r);
        MS_CHECK(!check_memory_bound || x.in_flight <= bound, where(r), ": ", x.in_flight,
                 " activations in flight, but ", schedule_name(s.kind), " holds at most ",
                 peak_formula_text(s.kind, p, m, v, r), " on this stage (a warm-up too long?)");
        finish(r, x.clock, x.clock + kForwardCost);
        return true;
      }
      case Op::kBackwardPass: {
        MS_CHECK(!x.bwd[k], where(r), ": backwarded twice");
        MS_CHECK(x.fwd[k], where(r), ": backward before its forward");
        bool grad = last || (next_virtual(p, r, c).rank == r ? x.bwd[k + m] : x.got_grad[k]);
        MS_CHECK(grad, where(r), ": its output gradient is not here (no RecvGrad of it before)");
        x.bwd[k] = 1;
        --x.in_flight;
        finish(r, x.clock, x.clock + kBackwardCost);
        return true;
      }
      case Op::kSendActivation:
      case Op::kSendGrad: {
        const bool act = in.op == Op::kSendActivation;
        MS_CHECK(act ? !last : !first, where(r), ": there is no ", act ? "next" : "previous",
                 " stage to send to");
        Peer q = act ? next_virtual(p, r, c) : prev_virtual(p, r, c);
        MS_CHECK(q.rank != r, where(r), ": the ", act ? "next" : "previous",
                 " chunk is on this rank; nothing to send");
        MS_CHECK(act ? x.fwd[k] : x.bwd[k], where(r), ": sends what it has not computed yet");
        const Instr want{act ? Op::kRecvActivation : Op::kRecvGrad, mb, q.chunk};
        if (!rendezvous) {
          auto& posted = act ? st[q.rank].posted_act : st[q.rank].posted_grad;
          posted[static_cast<size_t>(q.chunk) * m + mb] = x.clock;
          finish(r, x.clock, x.clock);
          return true;
        }
        const Instr* peer = at(q.rank);
        if (!peer || !(*peer == want)) return false;
        StageState& y = st[q.rank];
        auto& got = act ? y.got_act : y.got_grad;
        got[static_cast<size_t>(q.chunk) * m + mb] = 1;
        int64_t t = std::max(x.clock, y.clock);
        finish(r, x.clock, t);
        finish(q.rank, y.clock, t);
        return true;
      }
      case Op::kRecvActivation:
      case Op::kRecvGrad: {
        if (rendezvous) return false;  // completed by the matching send
        const bool act = in.op == Op::kRecvActivation;
        const int64_t t = (act ? x.posted_act : x.posted_grad)[k];
        if (t < 0) return false;
        (act ? x.got_act : x.got_grad)[k] = 1;
        finish(r, x.clock, std::max(x.clock, t));
        return true;
      }
      case Op::kReduceTiedGrads: {
        // A collective between the stages holding the tied embedding (the
        // first and the last); a no-op elsewhere, as in DeepSpeed.
        if (p == 1 || (r != 0 && r != p - 1)) {
          finish(r, x.clock, x.clock);
          return true;
        }
        if (r == p - 1) return false;  // completed from stage 0's side
        const Instr* peer = at(p - 1);
        if (!peer || peer->op != Op::kReduceTiedGrads) return false;
        int64_t t = std::max(x.clock, st[p - 1].clock);
        finish(p - 1, st[p - 1].clock, t);
        finish(r, x.clock, t);
        return true;
      }
      case Op::kReduceGrads:
        for (int cc = 0; cc < v; ++cc)
          for (int j = 0; j < m; ++j)
            MS_CHECK(x.bwd[static_cast<size_t>(cc) * m + j], where(r), ": before ",
                     describe({Op::kBackwardPass, j, cc}, v), " (gradients incomplete)");
        x.reduced = true;
        finish(r, x.clock, x.clock);
        return true;
      case Op::kOptimizerStep:
        MS_CHECK(x.reduced, where(r), ": before ReduceGrads");
        x.stepped = true;
        finish(r, x.clock, x.clock);
        return true;
    }
    return false;
  };

  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r)
      while (at(r) && step(r)) progress = true;
  }

  std::string blocked;
  for (int r = 0; r < p; ++r) {
    const Instr* in = at(r);
    if (!in) continue;
    blocked += "; " + where(r);
    int q = -1;
    if (in->op == Op::kSendActivation || in->op == Op::kRecvGrad)
      q = next_virtual(p, r, in->chunk).rank;
    if (in->op == Op::kSendGrad || in->op == Op::kRecvActivation)
      q = prev_virtual(p, r, in->chunk).rank;
    if (in->op == Op::kReduceTiedGrads) q = r == 0 ? p - 1 : 0;
    if (q >= 0)
      blocked += at(q) ? " (stage " + std::to_string(q) + " is at #" + std::to_string(st[q].pc) +
                             " " + describe(*at(q), v) + ")"
                       : " (stage " + std::to_string(q) + " has finished its list)";
  }
  MS_CHECK(blocked.empty(), "deadlock: no stage can move", blocked);

  for (int r = 0; r < p; ++r)
    for (int c = 0; c < v; ++c)
      for (int j = 0; j < m; ++j) {
        const size_t k = static_cast<size_t>(c) * m + j;
        MS_CHECK(st[r].fwd[k], "stage ", r, " never runs ", describe({Op::kForwardPass, j, c}, v));
        MS_CHECK(st[r].bwd[k], "stage ", r, " never runs ", describe({Op::kBackwardPass, j, c}, v));
      }
  for (int r = 0; r < p; ++r) {
    MS_CHECK(st[r].stepped, "stage ", r, " never runs ReduceGrads and OptimizerStep");
    res.makespan = std::max(res.makespan, st[r].clock);
    res.peak_in_flight.push_back(st[r].peak);
  }
  res.ideal = static_cast<int64_t>(m) * v * (kForwardCost + kBackwardCost);
  res.bubble = Rational::of(res.makespan - res.ideal, res.ideal);
  return res;
}

}  // namespace

SimResult simulate(const Schedule& s, bool check_memory_bound) {
  // Checks (data flow, deadlock, memory) with rendezvous sends, the timing
  // with buffered ones: the same lists, so the same peaks.
  const SimResult strict = run(s, check_memory_bound, true);
  SimResult res = run(s, check_memory_bound, false);
  res.rendezvous_makespan = strict.makespan;
  res.rendezvous_bubble = strict.bubble;
  return res;
}

}  // namespace ms::pp
