// The vocabulary and the three compute orders (see schedule.h). The messages
// are added by build_schedule (comm_order.cpp).
#include "parallel/pp/schedule.h"

#include <algorithm>

#include "tensor/error.h"

namespace ms::pp {

const char* op_name(Op op) {
  switch (op) {
    case Op::kLoadMicroBatch:
      return "LoadMicroBatch";
    case Op::kForwardPass:
      return "ForwardPass";
    case Op::kBackwardPass:
      return "BackwardPass";
    case Op::kSendActivation:
      return "SendActivation";
    case Op::kRecvActivation:
      return "RecvActivation";
    case Op::kSendGrad:
      return "SendGrad";
    case Op::kRecvGrad:
      return "RecvGrad";
    case Op::kReduceTiedGrads:
      return "ReduceTiedGrads";
    case Op::kReduceGrads:
      return "ReduceGrads";
    case Op::kOptimizerStep:
      return "OptimizerStep";
  }
  return "?";
}

bool is_compute(Op op) {
  return op == Op::kForwardPass || op == Op::kBackwardPass;
}
bool is_send(Op op) {
  return op == Op::kSendActivation || op == Op::kSendGrad;
}
bool is_recv(Op op) {
  return op == Op::kRecvActivation || op == Op::kRecvGrad;
}

std::string describe(const Instr& in, int virtual_stages) {
  std::string s = op_name(in.op);
  if (in.micro_batch < 0) return s + "()";
  s += "(mb " + std::to_string(in.micro_batch);
  if (virtual_stages > 1 && in.op != Op::kLoadMicroBatch)
    s += ", chunk " + std::to_string(in.chunk);
  return s + ")";
}

std::string short_name(const Instr& in, int virtual_stages) {
  std::string s;
  switch (in.op) {
    case Op::kLoadMicroBatch:
      s = "L";
      break;
    case Op::kForwardPass:
      s = "F";
      break;
    case Op::kBackwardPass:
      s = "B";
      break;
    case Op::kSendActivation:
      s = "sA";
      break;
    case Op::kRecvActivation:
      s = "rA";
      break;
    case Op::kSendGrad:
      s = "sG";
      break;
    case Op::kRecvGrad:
      s = "rG";
      break;
    case Op::kReduceTiedGrads:
      return "RT";
    case Op::kReduceGrads:
      return "RG";
    case Op::kOptimizerStep:
      return "OS";
  }
  s += std::to_string(in.micro_batch);
  if (virtual_stages > 1 && in.op != Op::kLoadMicroBatch) {  // a load feeds chunk 0 or v − 1
    s += '.';
    s += std::to_string(in.chunk);
  }
  return s;
}

const char* schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kGPipe:
      return "gpipe";
    case ScheduleKind::kOneFOneB:
      return "1f1b";
    case ScheduleKind::kInterleaved:
      return "interleaved";
  }
  return "?";
}

ScheduleKind parse_schedule_kind(const std::string& name) {
  for (ScheduleKind k : {ScheduleKind::kGPipe, ScheduleKind::kOneFOneB, ScheduleKind::kInterleaved})
    if (name == schedule_name(k)) return k;
  throw Error("--pipe-schedule: unknown schedule '" + name + "' (valid: gpipe, 1f1b, interleaved)");
}

int one_f_one_b_warmup(int p, int m, int r) {
  return std::min(p - r - 1, m);
}

int interleaved_warmup(int p, int m, int v, int r) {
  // Megatron's get_pp_rank_microbatches (megatron/core/pipeline_parallel/
  // schedules.py, forward_backward_pipelining_with_interleaving): every rank
  // runs (v − 1) groups of p micro-batches, then 2 more chunk-forwards per
  // stage behind it, (p − r − 1)·2 + (v − 1)·p in all, capped at the m·v
  // chunk-forwards there are. The first backward (micro-batch 0, last chunk)
  // needs only p − r − 1 + (v − 1)·p of them in a dependency graph; the
  // factor 2 fits Megatron's lock-step exchanges, where each iteration's
  // batched send/recv moves a tensor one stage, so the round trip to the last
  // stage and back spans 2(p − r − 1) iterations. The extra forwards cost
  // activation memory: rank 0 holds (1 + (p − 1)/(p·v)) times 1F1B's
  // (Korthikanti et al. 2022, §4.2.3; peak_formula).
  // One chunk per rank is Megatron's non-interleaved path (no virtual
  // pipeline size: forward_backward_pipelining_without_interleaving).
  if (v == 1) return one_f_one_b_warmup(p, m, r);
  return std::min(2 * (p - r - 1) + (v - 1) * p, m * v);
}

ComputeOrder gpipe_order(int p, int m) {
  // GPipe (Huang et al. 2019): every micro-batch forward, then every backward,
  // so all m micro-batches' activations are alive at the turn.
  ComputeOrder order(p);
  for (auto& stage : order) {
    for (int k = 0; k < m; ++k) stage.push_back({false, k});
    for (int k = 0; k < m; ++k) stage.push_back({true, k});
  }
  return order;
}

ComputeOrder one_f_one_b_order(int p, int m) {
  // PipeDream-Flush (Narayanan et al. 2021, §2.2): a stage starts backward as
  // soon as the last stage can return its first gradient, then alternates one
  // forward and one backward, so stage r holds at most p − r micro-batches
  // instead of m. Same bubble as GPipe, (p − 1)/m.
  ComputeOrder order(p);
  for (int r = 0; r < p; ++r) {
    int warmup = one_f_one_b_warmup(p, m, r), f = 0, b = 0;
    for (; f < warmup; ++f) order[r].push_back({false, f});
    for (; f < m; ++f, ++b) {  // steady state: forward f, then the oldest backward
      order[r].push_back({false, f});
      order[r].push_back({true, b});
    }
    for (; b < m; ++b) order[r].push_back({true, b});  // cool-down
  }
  return order;
}

namespace {
// Megatron's get_schedule_table with microbatch_group_size_per_vp_stage = p
// (its default) and get_model_chunk_id: the k-th forward on a rank walks p
// micro-batches through chunk 0, the same p through chunk 1, ..., then the
// next group of p; the k-th backward walks the same table with the chunk
// mirrored, v − 1 − chunk.
Work interleaved_work(int p, int v, int k, bool backward) {
  int in_group = k % (p * v);
  int chunk = in_group / p;
  if (backward) chunk = v - 1 - chunk;
  return {backward, (k / (p * v)) * p + k % p, chunk};
}
}  // namespace

ComputeOrder interleaved_order(int p, int m, int v) {
  // Megatron's own check: with groups of p micro-batches per chunk, a last
  // group smaller than p (m % p != 0) is refused ("dependency bubbles").
  MS_CHECK(m % p == 0, "--pipe-schedule interleaved needs --micro-batches (m = ", m,
           ") to be a multiple of --pp (p = ", p,
           "): micro-batches go through each model chunk in groups of p, as Megatron requires "
           "(Narayanan et al. 2021, §2.2.2)");
  // Interleaved 1F1B (Narayanan et al. 2021, §2.2.2): each rank holds v
  // chunks of layers, so a micro-batch crosses the ring of ranks v times and
  // each chunk-forward is 1/v as long: the bubble shrinks to (p − 1)/(v·m) at
  // the price of v times the point-to-point messages. Megatron's order:
  // warm-up forwards, then steady state (forward warm-up + k, then backward
  // k), then the remaining backwards.
  ComputeOrder order(p);
  const int total = m * v;
  for (int r = 0; r < p; ++r) {
    int warmup = interleaved_warmup(p, m, v, r), f = 0, b = 0;
    for (; f < warmup; ++f) order[r].push_back(interleaved_work(p, v, f, false));
    for (; f < total; ++f, ++b) {
      order[r].push_back(interleaved_work(p, v, f, false));
      order[r].push_back(interleaved_work(p, v, b, true));
    }
    for (; b < total; ++b) order[r].push_back(interleaved_work(p, v, b, true));
  }
  return order;
}

Schedule make_schedule(ScheduleKind kind, int p, int m, int v) {
  MS_CHECK(p >= 1, "--pp must be >= 1, got ", p);
  MS_CHECK(m >= 1, "--micro-batches must be >= 1, got ", m);
  MS_CHECK(v >= 1, "--virtual-stages must be >= 1, got ", v);
  MS_CHECK(v == 1 || kind == ScheduleKind::kInterleaved, "--virtual-stages ", v,
           " needs --pipe-schedule interleaved (", schedule_name(kind),
           " holds one model chunk per stage)");
  switch (kind) {
    case ScheduleKind::kGPipe:
      return build_schedule(kind, p, m, 1, gpipe_order(p, m));
    case ScheduleKind::kOneFOneB:
      return build_schedule(kind, p, m, 1, one_f_one_b_order(p, m));
    case ScheduleKind::kInterleaved:
      return build_schedule(kind, p, m, v, interleaved_order(p, m, v));
  }
  throw Error("make_schedule: unknown schedule kind");
}

bool is_first_virtual(const Schedule&, int rank, int chunk) {
  return rank == 0 && chunk == 0;
}
bool is_last_virtual(const Schedule& s, int rank, int chunk) {
  return rank == s.stages - 1 && chunk == s.virtual_stages - 1;
}
Peer next_virtual(int p, int rank, int chunk) {
  return rank + 1 < p ? Peer{rank + 1, chunk} : Peer{0, chunk + 1};
}
Peer prev_virtual(int p, int rank, int chunk) {
  return rank > 0 ? Peer{rank - 1, chunk} : Peer{p - 1, chunk - 1};
}

}  // namespace ms::pp
