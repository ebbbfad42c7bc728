// build_schedule: turns per-stage compute orders into instruction lists with
// loads and point-to-point messages placed so that blocking send/recv cannot
// deadlock.
//
// Why the placement needs care: with blocking (rendezvous) point-to-point, a
// send returns only once the peer posts the matching receive. In 1F1B's steady
// state, stage r sends an activation forward and then waits for a gradient,
// while stage r + 1 sends a gradient back and then waits for an activation:
// both sit in send, each waiting for the other's receive (NVIDIA/nccl#479's
// head-to-head hang). Megatron avoids it by fusing the pair into one
// exchange (send_forward_recv_backward); DeepSpeed's TrainSchedule by lining
// up the pairs step by step. We do the general version of DeepSpeed's idea:
//
//   Give every message a meeting time T and a key (T, sender, receiver,
//   kind, micro-batch, chunk): a total order. If on every rank the messages
//   appear in increasing key order, no cycle of waits can exist (a rank
//   waiting on message X waits for a peer still busy with an earlier-keyed
//   Y, whose own peer is busy with a still earlier Z, ..., which cannot come
//   back to X). Both sides place a message in the gap after their last
//   compute that ended by T, so the keys in the gap after compute g − 1 lie
//   in [end of compute g − 1, end of compute g): sorting within each gap
//   sorts the whole list.
//
//   T is taken from a run with unbounded buffers: the first moment, between
//   the send's data existing and its consumer starting, at which neither
//   rank is inside a compute. Then the rendezvous costs nobody any waiting
//   and the blocking run keeps the buffered run's timing, bubble included.
//   (With Megatron's interleaved warm-up no such moment exists for some
//   messages: see interleaved_warmup.) parallel/pp/simulator.cpp checks the
//   result.
#include <algorithm>
#include <tuple>

#include "parallel/pp/schedule.h"
#include "tensor/error.h"

namespace ms::pp {

namespace {

struct Message {
  std::tuple<long, int, int, int, int, int> key;  // (meeting time, from, to, kind, mb, chunk)
  int from, to, from_gap, to_gap;
  Instr send, recv;
};

std::string work_name(const Work& w, int v) {
  return describe({w.backward ? Op::kBackwardPass : Op::kForwardPass, w.micro_batch, w.chunk}, v);
}

}  // namespace

Schedule build_schedule(ScheduleKind kind, int p, int m, int v, const ComputeOrder& order,
                        CommPlacement placement) {
  MS_CHECK(static_cast<int>(order.size()) == p, "build_schedule: compute order has ", order.size(),
           " stages, expected p = ", p);
  Schedule s{kind, p, m, v, std::vector<std::vector<Instr>>(p)};
  // Index of the work (rank, backward, mb, chunk) in these tables.
  auto id = [&](int r, bool bwd, int mb, int c) { return ((r * 2 + bwd) * v + c) * m + mb; };
  std::vector<long> end(static_cast<size_t>(2 * p * v * m), -1), start(end.size(), -1);
  std::vector<int> pos(end.size(), -1);
  for (int r = 0; r < p; ++r)
    for (size_t i = 0; i < order[r].size(); ++i) {
      const Work& w = order[r][i];
      MS_CHECK(w.micro_batch >= 0 && w.micro_batch < m && w.chunk >= 0 && w.chunk < v,
               "build_schedule: stage ", r, " work #", i, " ", work_name(w, v),
               " is out of range (m = ", m, ", v = ", v, ")");
      int k = id(r, w.backward, w.micro_batch, w.chunk);
      MS_CHECK(pos[k] < 0, "build_schedule: stage ", r, " has ", work_name(w, v), " twice");
      pos[k] = static_cast<int>(i);
    }

  // 1. Timing with unbounded buffers: each compute starts once its rank is
  //    free and its input exists.
  std::vector<size_t> next(p, 0);
  std::vector<long> clock(p, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r)
      for (; next[r] < order[r].size(); ++next[r]) {
        const Work& w = order[r][next[r]];
        long ready = clock[r];
        if (!w.backward && !is_first_virtual(s, r, w.chunk)) {
          Peer q = prev_virtual(p, r, w.chunk);
          long t = end[id(q.rank, false, w.micro_batch, q.chunk)];
          if (t < 0) break;
          ready = std::max(ready, t);
        }
        if (w.backward) {
          if (end[id(r, false, w.micro_batch, w.chunk)] < 0) break;
          if (!is_last_virtual(s, r, w.chunk)) {
            Peer q = next_virtual(p, r, w.chunk);
            long t = end[id(q.rank, true, w.micro_batch, q.chunk)];
            if (t < 0) break;
            ready = std::max(ready, t);
          }
        }
        int k = id(r, w.backward, w.micro_batch, w.chunk);
        start[k] = ready;
        end[k] = clock[r] = ready + (w.backward ? kBackwardCost : kForwardCost);
        progress = true;
      }
  }
  std::string stuck;
  for (int r = 0; r < p; ++r)
    if (next[r] < order[r].size())
      stuck +=
          str_cat("; stage ", r, " waits at work #", next[r], " ", work_name(order[r][next[r]], v));
  MS_CHECK(stuck.empty(), "build_schedule: the compute order cannot run even with unbounded ",
           "buffers (an input that never comes)", stuck);

  // 2. The messages between ranks (a chunk handing over to a chunk on the
  //    same rank, as with p = 1 and v > 1, needs none). Each meets at time T:
  //    the first moment, from when it exists until its consumer starts, at
  //    which neither rank is inside a compute, so a rendezvous costs no
  //    waiting (if there is none, T = the consumer's start and the sender
  //    waits). Both sides place it in the gap after their last compute that
  //    ended by T.
  std::vector<std::vector<std::pair<long, long>>> spans(p);  // [rank] -> (start, end)
  for (int r = 0; r < p; ++r)
    for (const Work& w : order[r]) {
      int k = id(r, w.backward, w.micro_batch, w.chunk);
      spans[r].push_back({start[k], end[k]});
    }
  // A rank's computes run in list order, so starts and ends both increase.
  auto gap_at = [&](int r, long t) {  // computes that ended by t
    auto it =
        std::upper_bound(spans[r].begin(), spans[r].end(), t,
                         [](long x, const std::pair<long, long>& sp) { return x < sp.second; });
    return static_cast<int>(it - spans[r].begin());
  };
  auto busy = [&](int r, long t) {  // strictly inside a compute at t
    size_t g = static_cast<size_t>(gap_at(r, t));
    return g < spans[r].size() && spans[r][g].first < t;
  };
  std::vector<Message> msgs;
  auto add = [&](int r, const Work& w, Peer to, bool grad) {
    if (to.rank == r) return;
    const int mb = w.micro_batch;
    const long sent = end[id(r, w.backward, mb, w.chunk)];
    const long needed = start[id(to.rank, w.backward, mb, to.chunk)];
    long t = needed;
    std::vector<long> candidates{sent};
    for (int q : {r, to.rank})
      for (size_t g = static_cast<size_t>(gap_at(q, sent));
           g < spans[q].size() && spans[q][g].second < needed; ++g)
        candidates.push_back(spans[q][g].second);
    std::sort(candidates.begin(), candidates.end());
    for (long c : candidates)
      if (!busy(r, c) && !busy(to.rank, c)) {
        t = c;
        break;
      }
    Message msg;
    msg.key = {t, r, to.rank, grad, mb, w.chunk};
    msg.from = r;
    msg.to = to.rank;
    msg.from_gap = gap_at(r, t);
    msg.to_gap = gap_at(to.rank, t);
    if (placement == CommPlacement::kNaive) {
      msg.from_gap = pos[id(r, w.backward, mb, w.chunk)] + 1;
      msg.to_gap = pos[id(to.rank, w.backward, mb, to.chunk)];
    }
    msg.send = {grad ? Op::kSendGrad : Op::kSendActivation, mb, w.chunk};
    msg.recv = {grad ? Op::kRecvGrad : Op::kRecvActivation, mb, to.chunk};
    msgs.push_back(msg);
  };
  for (int r = 0; r < p; ++r)
    for (const Work& w : order[r]) {
      if (!w.backward && !is_last_virtual(s, r, w.chunk))
        add(r, w, next_virtual(p, r, w.chunk), false);
      if (w.backward && !is_first_virtual(s, r, w.chunk))
        add(r, w, prev_virtual(p, r, w.chunk), true);
    }

  // 3. Each gap's messages in key order (kNaive: sends, then receives).
  using Slot = std::pair<std::tuple<int, std::tuple<long, int, int, int, int, int>>, Instr>;
  std::vector<std::vector<std::vector<Slot>>> gaps(p);
  for (int r = 0; r < p; ++r) gaps[r].resize(order[r].size() + 1);
  const bool naive = placement == CommPlacement::kNaive;
  for (const Message& msg : msgs) {
    gaps[msg.from][msg.from_gap].push_back({{0, msg.key}, msg.send});
    gaps[msg.to][msg.to_gap].push_back({{naive ? 1 : 0, msg.key}, msg.recv});
  }
  for (int r = 0; r < p; ++r) {
    auto& out = s.steps[r];
    for (size_t i = 0; i <= order[r].size(); ++i) {
      std::sort(gaps[r][i].begin(), gaps[r][i].end(),
                [](const Slot& a, const Slot& b) { return a.first < b.first; });
      for (const Slot& slot : gaps[r][i]) out.push_back(slot.second);
      if (i == order[r].size()) break;
      const Work& w = order[r][i];
      // Inputs on the first stage, labels on the last (DeepSpeed's
      // LoadMicroBatch on both); one rank holding both loads once.
      if (!w.backward &&
          (is_first_virtual(s, r, w.chunk) || (is_last_virtual(s, r, w.chunk) && p > 1)))
        out.push_back({Op::kLoadMicroBatch, w.micro_batch, 0});
      out.push_back({w.backward ? Op::kBackwardPass : Op::kForwardPass, w.micro_batch, w.chunk});
    }
    // DeepSpeed's final step: tied grads first, so the embedding's two copies
    // are summed on whole tensors before any data-parallel partitioning
    // (Megatron#844), then the data-parallel reduction, then the step.
    out.push_back({Op::kReduceTiedGrads});
    out.push_back({Op::kReduceGrads});
    out.push_back({Op::kOptimizerStep});
  }
  return s;
}

}  // namespace ms::pp
