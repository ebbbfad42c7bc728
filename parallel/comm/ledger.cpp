// The communication ledger (see ledger.h): snapshots, the ring model of MPI's
// collectives, the per-step meter and the table `minispeed train` prints.
#include "parallel/comm/ledger.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "parallel/comm/communicator.h"
#include "tensor/factory.h"

namespace ms {

const char* comm_op_name(CommOp op) {
  static const char* names[kNumCommOps] = {
      "all_reduce", "reduce_scatter", "all_gather",      "broadcast",           "barrier",
      "send",       "recv",           "ring_all_reduce", "ring_reduce_scatter", "ring_all_gather",
      "all_to_all", "pairwise_all_to_all"};
  return names[static_cast<int>(op)];
}

bool comm_op_measured(CommOp op) {
  switch (op) {
    case CommOp::AllReduce:
    case CommOp::ReduceScatter:
    case CommOp::AllGather:
    case CommOp::Broadcast:
    case CommOp::AllToAll:
      return false;
    default:
      return true;  // barrier moves no payload; the rest are counted messages
  }
}

OpTraffic& OpTraffic::operator+=(const OpTraffic& o) {
  calls += o.calls;
  sent += o.sent;
  received += o.received;
  payload += o.payload;
  return *this;
}

OpTraffic& OpTraffic::operator-=(const OpTraffic& o) {
  calls -= o.calls;
  sent -= o.sent;
  received -= o.received;
  payload -= o.payload;
  return *this;
}

OpTraffic Traffic::total() const {
  OpTraffic t;
  for (const OpTraffic& o : ops_) t += o;
  return t;
}

int64_t Traffic::collective_calls() const {
  int64_t n = 0;
  for (int i = 0; i < kNumCommOps; ++i)
    if (CommOp(i) != CommOp::Send && CommOp(i) != CommOp::Recv) n += ops_[i].calls;
  return n;
}

Traffic& Traffic::operator+=(const Traffic& o) {
  for (int i = 0; i < kNumCommOps; ++i) ops_[i] += o.ops_[i];
  return *this;
}

Traffic& Traffic::operator-=(const Traffic& o) {
  for (int i = 0; i < kNumCommOps; ++i) ops_[i] -= o.ops_[i];
  return *this;
}

std::string Traffic::describe() const {
  std::string out;
  for (int i = 0; i < kNumCommOps; ++i) {
    const OpTraffic& t = ops_[i];
    if (t.calls == 0) continue;
    out += str_cat(comm_op_name(CommOp(i)), ": ", t.calls, " call(s), sent ", t.sent,
                   " B, received ", t.received, " B, payload ", t.payload, " B",
                   comm_op_measured(CommOp(i)) ? "" : " (modelled: ring)", "\n");
  }
  return out.empty() ? "no communication\n" : out;
}

// ---------------------------------------------------------------- ring model
namespace {

// ring.cpp's blocks: n split `size` ways, the first n % size one longer.
int64_t block_len(int64_t n, int size, int c) {
  return n / size + (c < n % size ? 1 : 0);
}

}  // namespace

// Reduce-scatter: rank r sends every block but r and receives every block but
// r-1; all-gather: sends every block but r+1, receives every block but r
// (ring.cpp walks the blocks in that order).
RingBytes ring_all_reduce_bytes(int64_t n, int64_t elem, int rank, int size) {
  if (size <= 1) return {};
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  const int64_t mine = block_len(n, size, rank);
  return {(2 * n - mine - block_len(n, size, next)) * elem,
          (2 * n - mine - block_len(n, size, prev)) * elem};
}

RingBytes ring_reduce_scatter_bytes(int64_t n_in, int64_t elem, int size) {
  const int64_t bytes = (size - 1) * (n_in / size) * elem;  // D-1 blocks each way
  return {bytes, bytes};
}

RingBytes ring_all_gather_bytes(int64_t n_out, int64_t elem, int size) {
  return ring_reduce_scatter_bytes(n_out, elem, size);
}

RingBytes chain_broadcast_bytes(int64_t n, int64_t elem, int rank, int root, int size) {
  const int pos = (rank - root + size) % size;  // place in the chain root, root+1, ...
  return {pos < size - 1 ? n * elem : 0, pos > 0 ? n * elem : 0};
}

RingBytes all_to_all_bytes(const std::vector<int64_t>& in_counts,
                           const std::vector<int64_t>& out_counts, int64_t elem, int rank) {
  RingBytes b;
  for (size_t j = 0; j < in_counts.size(); ++j)
    if (int(j) != rank) b.sent += in_counts[j] * elem;
  for (size_t i = 0; i < out_counts.size(); ++i)
    if (int(i) != rank) b.received += out_counts[i] * elem;
  return b;
}

// ---------------------------------------------------------------- StepTraffic
StepTraffic::StepTraffic(const Communicator& comm)
    : ledger_(comm.ledger()), setup_(ledger_->snapshot()) {}

void StepTraffic::begin_step() {
  MS_CHECK(!in_step_, "StepTraffic::begin_step: the previous step has not ended");
  in_step_ = true;
  step_start_ = ledger_->snapshot();
}

void StepTraffic::end_step() {
  MS_CHECK(in_step_, "StepTraffic::end_step without begin_step");
  in_step_ = false;
  in_steps_ += ledger_->snapshot() - step_start_;
  ++steps_;
}

Traffic StepTraffic::outside_steps() const {
  return ledger_->snapshot() - setup_ - in_steps_;
}

// ---------------------------------------------------------------- formula
StepFormula zero_step_formula(int stage, int dp_size, int64_t micro_steps, int64_t psi,
                              int64_t psi_padded, int64_t resident_padded,
                              int64_t param_bytes, bool overflow_flag) {
  MS_CHECK(stage >= 0 && stage <= 3, "zero_step_formula: stage ", stage, " (valid: 0..3)");
  MS_CHECK(dp_size >= 1 && micro_steps >= 1, "zero_step_formula: dp_size ", dp_size,
           " and micro_steps ", micro_steps, " must be >= 1");
  const int64_t D = dp_size, G = micro_steps, P = psi_padded, R = resident_padded;
  StepFormula f;
  f.title = str_cat(stage == 0 ? "DDP (ZeRO stage 0)" : str_cat("ZeRO stage ", stage), ", ", D,
                    " rank(s), ", G, " micro-step(s)");
  // Totals over the D ranks: one rank sends (D-1)/D of each message per
  // ring pass, so D ranks send (D-1) messages' worth.
  const int64_t pass = (D - 1) * 4;
  const int64_t gather = (D - 1) * param_bytes;  // an all_gather of the parameters
  const std::string pb = str_cat(param_bytes);
  switch (stage) {
    case 0:
      f.total[CommOp::AllReduce].sent = 2 * pass * psi;
      f.rule = str_cat("all_reduce 2(D-1)/D·Ψ·4 with Ψ = ", psi);
      break;
    case 1:
    case 2:
      f.total[CommOp::ReduceScatter].sent = (stage == 2 ? G : 1) * pass * P;
      f.total[CommOp::AllGather].sent = gather * P;
      f.rule = str_cat(stage == 2 ? "reduce_scatter G·(D-1)/D·Ψp·4 (every micro-step)"
                                  : "reduce_scatter (D-1)/D·Ψp·4",
                       " + all_gather (D-1)/D·Ψp·", pb, " with Ψ = ", psi, " padded to Ψp = ", P);
      break;
    case 3:
      f.total[CommOp::AllGather].sent = gather * (2 * G * (P - R) + R);
      f.total[CommOp::ReduceScatter].sent = G * pass * P;
      f.rule = str_cat(
          "all_gather (D-1)/D·", pb, "·(2G·(Ψp-R) + R) [blocks in forward and again in backward; the "
          "resident R once, after the step] + reduce_scatter G·(D-1)/D·Ψp·4, with Ψ = ",
          psi, " padded to Ψp = ", P, ", R = ", R);
      break;
  }
  if (stage > 0) {
    f.total[CommOp::AllReduce].sent = 2 * (D - 1) * 8;  // the global grad norm: one f64
    f.rule += "; + all_reduce of the grad norm (one f64)";
  }
  if (overflow_flag) {
    f.total[CommOp::AllReduce].sent += 2 * (D - 1) * 4;  // one i32
    f.rule += "; + all_reduce of the overflow flag (one i32)";
  }
  if (D == 1) f.total = Traffic();  // one rank talks to nobody
  return f;
}

std::vector<OpCheck> check_against_formula(const std::vector<Traffic>& per_rank, int64_t steps,
                                           const StepFormula& formula) {
  std::vector<OpCheck> out;
  const int64_t D = static_cast<int64_t>(per_rank.size());
  for (int i = 0; i < kNumCommOps; ++i) {
    const CommOp op = CommOp(i);
    OpCheck c{op, {}, formula.total[op].sent, true};
    bool any = c.formula_total != 0;
    int64_t sum = 0;
    for (const Traffic& t : per_rank) {
      c.sent.push_back(t[op].sent);
      sum += t[op].sent;
      any |= t[op].calls != 0 || t[op].sent != 0;
    }
    if (!any) continue;
    c.match = sum == c.formula_total * steps;
    for (size_t r = 0; r < per_rank.size(); ++r) {
      if (r < formula.per_rank.size()) {
        c.match &= c.sent[r] == formula.per_rank[r][op].sent * steps;
        continue;
      }
      // |sent_r - sum/D| <= 16 bytes per call, in integers.
      const int64_t slack = 16 * per_rank[r][op].calls;
      c.match &= std::llabs(c.sent[r] * D - sum) <= slack * D;
    }
    out.push_back(std::move(c));
  }
  return out;
}

// ---------------------------------------------------------------- the table
namespace {

constexpr int kFields = 4;  // calls, sent, received, payload

}  // namespace

std::vector<Traffic> gather_traffic(Communicator& comm, const Traffic& mine) {
  std::vector<double> v;
  for (int i = 0; i < kNumCommOps; ++i) {
    const OpTraffic& o = mine[CommOp(i)];
    for (int64_t x : {o.calls, o.sent, o.received, o.payload}) v.push_back(double(x));
  }
  const int64_t n = kNumCommOps * kFields;
  Tensor in = from_vector(v, {n}, DType::F64);  // exact below 2^53 bytes
  Tensor all = Tensor::empty({comm.size() * n}, DType::F64);
  comm.all_gather(in, all);
  std::vector<Traffic> out(static_cast<size_t>(comm.size()));
  const double* p = all.host_data<double>();
  for (Traffic& t : out)
    for (int i = 0; i < kNumCommOps; ++i, p += kFields)
      t[CommOp(i)] = {int64_t(p[0]), int64_t(p[1]), int64_t(p[2]), int64_t(p[3])};
  return out;
}

namespace {

// total / by: exact when it divides, else one decimal.
std::string ratio(int64_t total, int64_t by) {
  if (by <= 0) return "-";
  if (total % by == 0) return std::to_string(total / by);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", double(total) / double(by));
  return buf;
}

std::string cell(const std::string& s, int width) {
  return s.size() >= size_t(width) ? " " + s : std::string(width - s.size(), ' ') + s;
}

}  // namespace

std::string traffic_report(Communicator& comm, const StepTraffic& meter, const StepFormula& formula,
                           bool* all_match) {
  const int D = comm.size();
  // Taken before the gathers below add their own traffic.
  const Traffic setup_mine = meter.setup(), steps_mine = meter.in_steps(),
                outside_mine = meter.outside_steps();
  std::vector<Traffic> setup = gather_traffic(comm, setup_mine);
  std::vector<Traffic> steps = gather_traffic(comm, steps_mine);
  std::vector<Traffic> outside = gather_traffic(comm, outside_mine);
  const int64_t n = meter.num_steps();  // the same on every rank: steps are collective
  std::vector<OpCheck> checks = check_against_formula(steps, n, formula);
  bool ok = n > 0;
  for (const OpCheck& c : checks) ok &= c.match;
  if (all_match) *all_match = ok;
  if (comm.rank() != 0) return "";

  const int w = 11;
  std::string s = str_cat("communication per training step (", formula.title,
                          "): bytes each rank sent, measured by the ledger, beside the formula\n",
                          "  formula: ", formula.rule, "\n");
  std::string head = str_cat("  ", std::string(20, ' '), cell("calls", 6));
  for (int r = 0; r < D; ++r) head += cell(str_cat("rank ", r), w);
  s += head + cell("formula", w) + "  match\n";
  int64_t calls_total = 0;
  for (const OpCheck& c : checks) {
    const int64_t calls = steps[0][c.op].calls;
    calls_total += calls;
    std::string name = str_cat(comm_op_name(c.op), comm_op_measured(c.op) ? "" : "*");
    s += str_cat("  ", name, std::string(name.size() < 20 ? 20 - name.size() : 1, ' '),
                 cell(ratio(calls, n), 6));
    for (int r = 0; r < D; ++r) s += cell(ratio(c.sent[r], n), w);
    s += cell(ratio(c.formula_total, D), w) + (c.match ? "  yes\n" : "  NO\n");
  }
  int64_t formula_sum = 0;
  for (const OpCheck& c : checks) formula_sum += c.formula_total;
  s += str_cat("  total", std::string(15, ' '), cell(ratio(calls_total, n), 6));
  for (int r = 0; r < D; ++r) s += cell(ratio(steps[r].total().sent, n), w);
  s += cell(ratio(formula_sum, D), w) + (ok ? "  yes\n" : "  NO\n");
  s += "  * modelled: the bytes a ring moves for MPI's collective (parallel/comm/ledger.h); the\n"
       "    ranks differ where D does not divide a message, and a broadcast's last rank sends "
       "none\n";
  if (std::any_of(checks.begin(), checks.end(),
                  [](const OpCheck& c) { return c.op == CommOp::AllToAll; }))
    s += "    (all_to_all*: every block but the rank's own, whatever algorithm MPI picks)\n";
  s += "outside the training steps (whole run, not in the formula): bytes each rank sent\n";
  auto row = [&](const char* what, const std::vector<Traffic>& t) {
    std::string line = str_cat("  ", what);
    line += std::string(line.size() < 26 ? 26 - line.size() : 1, ' ');
    for (int r = 0; r < D; ++r) line += cell(std::to_string(t[r].total().sent), w);
    std::string ops;
    for (int i = 0; i < kNumCommOps; ++i)
      if (t[0][CommOp(i)].calls > 0)
        ops +=
            str_cat(ops.empty() ? "" : ", ", t[0][CommOp(i)].calls, " ", comm_op_name(CommOp(i)));
    return line + "  (" + (ops.empty() ? "none" : ops) + ")\n";
  };
  s += row("setup (before step 1)", setup);
  s += row("loss, eval, reports", outside);
  if (n == 0)
    s += "traffic: no training steps, nothing to compare\n";
  else if (ok)
    s += str_cat("traffic: measured == formula for every op (", n, " steps)\n");
  else
    s += str_cat("traffic: MEASURED != FORMULA (", n, " steps): see the rows marked NO\n");
  return s;
}

}  // namespace ms
