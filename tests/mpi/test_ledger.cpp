// The communication ledger (parallel/comm/ledger.h): per-op calls and bytes
// of every collective and message, the ring model of MPI's collectives against
// the bytes our ring collectives really send, and measured == formula for
// ZeRO stages 0-3 training a small GPT. Runs at 2 and 4 ranks.
//
// Expected bytes are computed here by walking the ring step by step, the way
// ring.cpp moves blocks — not with the ledger's closed forms — and every rank
// compares its own numbers; collectives (the sums over ranks) run before any
// CHECK.
#include <string>
#include <vector>

#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/ring.h"
#include "parallel/zero/stage.h"
#include "parallel/zero/zero_optimizer.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

// Block c of n elements split d ways (ring.cpp's cut).
int64_t block(int64_t n, int d, int c) {
  return n / d + (c < n % d ? 1 : 0);
}
int wrap(int a, int d) {
  return ((a % d) + d) % d;
}

// Elements rank r sends and receives in a ring all-reduce, step by step.
std::pair<int64_t, int64_t> walk_all_reduce(int64_t n, int r, int d) {
  int64_t sent = 0, got = 0;
  for (int s = 0; s < d - 1; ++s) {  // reduce-scatter
    sent += block(n, d, wrap(r - s - 1, d));
    got += block(n, d, wrap(r - s - 2, d));
  }
  for (int s = 0; s < d - 1; ++s) {  // all-gather
    sent += block(n, d, wrap(r - s, d));
    got += block(n, d, wrap(r - s - 1, d));
  }
  return {sent, got};
}

// Sum over ranks of an int64 (exact in f64 for these sizes).
int64_t sum_over(Communicator& comm, int64_t x) {
  Tensor t = from_vector(std::vector<double>{double(x)}, {1}, DType::F64);
  comm.all_reduce(t);
  return int64_t(t.item());
}

Tensor filled(int64_t n, DType dtype, int r) {
  return full({n}, 1 + r, dtype);
}

}  // namespace

TEST_CASE("ledger: each MPI collective counts one call, its payload and the ring model",
          "[mpi][ledger]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  for (DType dtype : {DType::F32, DType::F64, DType::BF16, DType::I32})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1001)}) {
      const int64_t es = int64_t(dtype_size(dtype));
      const int64_t rs = dtype == DType::BF16 ? 4 : es;  // reductions move f32 for bf16
      INFO(dtype_name(dtype) << " n=" << n << " on " << d << " ranks, rank " << r);

      Traffic t0 = world.traffic();
      Tensor a = filled(n, dtype, r);
      world.all_reduce(a);
      Traffic ar = world.traffic() - t0;
      auto [ar_sent, ar_got] = walk_all_reduce(n, r, d);

      t0 = world.traffic();
      Tensor rs_in = filled(d * n, dtype, r), rs_out = Tensor::empty({n}, dtype);
      world.reduce_scatter(rs_in, rs_out);
      Traffic rsc = world.traffic() - t0;

      t0 = world.traffic();
      Tensor ag_in = filled(n, dtype, r), ag_out = Tensor::empty({d * n}, dtype);
      world.all_gather(ag_in, ag_out);
      Traffic ag = world.traffic() - t0;

      const int root = d - 1;
      t0 = world.traffic();
      Tensor b = filled(n, dtype, r);
      world.broadcast(b, root);
      Traffic bc = world.traffic() - t0;

      t0 = world.traffic();
      world.barrier();
      Traffic ba = world.traffic() - t0;

      // Conservation: what the ranks send, the ranks receive.
      Traffic all = ar + rsc + ag + bc + ba;
      const int64_t total_sent = sum_over(world, all.total().sent);
      const int64_t total_got = sum_over(world, all.total().received);

      CHECK(ar[CommOp::AllReduce] == OpTraffic{1, ar_sent * rs, ar_got * rs, n * es});
      CHECK(ar.total() == ar[CommOp::AllReduce]);  // nothing else moved
      CHECK(rsc[CommOp::ReduceScatter] ==
            OpTraffic{1, (d - 1) * n * rs, (d - 1) * n * rs, d * n * es});
      CHECK(ag[CommOp::AllGather] == OpTraffic{1, (d - 1) * n * es, (d - 1) * n * es, d * n * es});
      // The chain root, root+1, ..., root-1: the last one only receives.
      const bool last = r == wrap(root - 1, d), is_root = r == root;
      CHECK(bc[CommOp::Broadcast] ==
            OpTraffic{1, d > 1 && !last ? n * es : 0, is_root ? 0 : n * es, n * es});
      CHECK(ba[CommOp::Barrier] == OpTraffic{1, 0, 0, 0});
      CHECK(total_sent == total_got);
      // all_reduce 2(D-1)·n, reduce_scatter and all_gather (D-1)·n per rank,
      // broadcast (D-1)·n in all.
      CHECK(total_sent ==
            2 * (d - 1) * n * rs + d * (d - 1) * n * rs + d * (d - 1) * n * es + (d - 1) * n * es);
    }
}

TEST_CASE("ledger: nonblocking forms count like blocking ones; send/recv are exact",
          "[mpi][ledger]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  const int next = (r + 1) % d, prev = (r + d - 1) % d;
  Traffic t0 = world.traffic();
  Tensor a = filled(1001, DType::F32, r), c = filled(1001, DType::F32, r);
  world.iall_reduce(a).wait();
  Traffic nb = world.traffic() - t0;
  t0 = world.traffic();
  world.all_reduce(c);
  Traffic bl = world.traffic() - t0;

  t0 = world.traffic();
  Tensor out = filled(333, DType::F64, r), in = zeros({333}, DType::F64);
  Tensor out2 = filled(5, DType::BF16, r), in2 = zeros({5}, DType::BF16);
  Work rw = world.irecv(in, prev, 7), rw2 = world.irecv(in2, prev, 8);
  Work sw = world.isend(out, next, 7);
  world.send(out2, next, 8);
  rw.wait();
  rw2.wait();
  sw.wait();
  Traffic p2p = world.traffic() - t0;

  CHECK(nb == bl);
  CHECK(p2p[CommOp::Send] == OpTraffic{2, 333 * 8 + 5 * 2, 0, 333 * 8 + 5 * 2});
  CHECK(p2p[CommOp::Recv] == OpTraffic{2, 0, 333 * 8 + 5 * 2, 333 * 8 + 5 * 2});
  CHECK(p2p.collective_calls() == 0);
  CHECK(bl.collective_calls() == 1);
}

TEST_CASE("ledger: copies share a ledger, split() starts a new one", "[mpi][ledger]") {
  Communicator world = Communicator::world();
  const int r = world.rank();
  Communicator copy = world;
  Communicator sub = world.split(r % 2, r);
  Traffic w0 = world.traffic(), s0 = sub.traffic();
  Tensor t = filled(10, DType::F32, r);
  copy.all_reduce(t);
  sub.all_reduce(t);
  Traffic dw = world.traffic() - w0, ds = sub.traffic() - s0;
  CHECK(dw[CommOp::AllReduce].calls == 1);  // copy's call, not sub's
  // At 2 ranks sub has one rank: no collective, nothing counted (next test).
  CHECK(ds[CommOp::AllReduce].calls == (sub.size() == 1 ? 0 : 1));
  CHECK(ds[CommOp::AllReduce].sent ==
        (sub.size() == 1 ? 0 : walk_all_reduce(10, sub.rank(), sub.size()).first * 4));
}

TEST_CASE("ledger: a 1-rank group issues no collective and counts none; results are the identity",
          "[mpi][ledger]") {
  Communicator world = Communicator::world();
  const int r = world.rank();
  Communicator alone = world.split(r, 0);  // every rank its own group
  REQUIRE(alone.size() == 1);
  const Traffic t0 = alone.traffic();
  Tensor x = from_vector(std::vector<double>{1.5, -2, 3}, {3}, DType::F32);
  Tensor h = from_vector(std::vector<double>{1.5, -2, 3}, {3}, DType::BF16);
  alone.all_reduce(x, ReduceOp::Sum);
  alone.all_reduce(h, ReduceOp::Avg);
  alone.iall_reduce(x, ReduceOp::Max).wait();
  Tensor rs = zeros({3});
  alone.reduce_scatter(x, rs);
  Tensor ag = zeros({3});
  alone.iall_gather(x, ag).wait();
  alone.broadcast(x, 0);
  alone.barrier();
  const Traffic d = alone.traffic() - t0;
  // The argument checks still run: a wrong shape fails as on many ranks.
  Tensor wrong = zeros({4});
  CHECK_THROWS_WITH(alone.all_gather(x, wrong), Catch::Contains("size() × in.numel()"));
  CHECK_THROWS_WITH(alone.broadcast(x, 1), Catch::Contains("not a rank"));
  const std::vector<double> want{1.5, -2, 3};
  CHECK(x.to_vector() == want);
  CHECK(h.to_vector() == want);
  CHECK(rs.to_vector() == want);
  CHECK(ag.to_vector() == want);
  CHECK(d.collective_calls() == 0);
  CHECK(d.total() == OpTraffic{});
}

TEST_CASE("ledger: the ring collectives' measured bytes equal the model, rank by rank",
          "[mpi][ledger]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  // Tiny segments too: many messages per step must add up the same.
  for (RingOptions opt : {RingOptions{}, RingOptions{12, 2}})
    for (DType dtype : {DType::F32, DType::F64, DType::I32, DType::BF16, DType::F16})
      for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1001)}) {
        INFO(dtype_name(dtype) << " n=" << n << " segment_bytes " << opt.segment_bytes);
        const int64_t es = int64_t(dtype_size(dtype));
        const bool half = es == 2;
        Tensor a = filled(n, dtype, r), b = clone(a);
        Traffic t0 = world.traffic();
        world.all_reduce(a);
        Traffic modelled = world.traffic() - t0;
        t0 = world.traffic();
        ring_all_reduce(world, b, ReduceOp::Sum, opt);
        Traffic measured = world.traffic() - t0;

        Tensor in = filled(d * n, dtype, r), o1 = Tensor::empty({n}, dtype), o2 = clone(o1);
        t0 = world.traffic();
        world.reduce_scatter(in, o1);
        Traffic rs_model = world.traffic() - t0;
        t0 = world.traffic();
        ring_reduce_scatter(world, in, o2, ReduceOp::Sum, opt);
        Traffic rs_ring = world.traffic() - t0;

        Tensor gi = filled(n, dtype, r), g1 = Tensor::empty({d * n}, dtype), g2 = clone(g1);
        t0 = world.traffic();
        world.all_gather(gi, g1);
        Traffic ag_model = world.traffic() - t0;
        t0 = world.traffic();
        ring_all_gather(world, gi, g2, opt);
        Traffic ag_ring = world.traffic() - t0;

        const OpTraffic& m = modelled[CommOp::AllReduce];
        const OpTraffic& q = measured[CommOp::RingAllReduce];
        CHECK(measured.total() == q);  // no stray send/recv rows: all inside ring_all_reduce
        CHECK(q.calls == 1);
        CHECK(q.payload == m.payload);
        if (!half) {
          CHECK(q.sent == m.sent);
          CHECK(q.received == m.received);
        } else {
          // Reduce-scatter in f32, all-gather of the rounded result in 16 bits.
          int64_t rs_sent = 0, ag_sent = 0;
          for (int s = 0; s < d - 1; ++s) {
            rs_sent += block(n, d, wrap(r - s - 1, d));
            ag_sent += block(n, d, wrap(r - s, d));
          }
          CHECK(q.sent == rs_sent * 4 + ag_sent * 2);
          CHECK(m.sent == (rs_sent + ag_sent) * 4);
        }
        const OpTraffic& rm = rs_model[CommOp::ReduceScatter];
        const OpTraffic& rq = rs_ring[CommOp::RingReduceScatter];
        CHECK(rs_ring.total() == rq);
        CHECK(rq == rm);
        const OpTraffic& gm = ag_model[CommOp::AllGather];
        const OpTraffic& gq = ag_ring[CommOp::RingAllGather];
        CHECK(ag_ring.total() == gq);
        CHECK(gq == gm);
      }
}

// ---------------------------------------------------------------- ZeRO
namespace {

GPTConfig small_gpt() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 30, c.block_size = 15;  // odd: padding happens
  return c;
}


struct Measured {
  std::vector<Traffic> per_rank;  // in the steps, every rank's
  StepFormula formula;
  int64_t steps = 0;
};

Measured train(Communicator& world, int stage, int accum, size_t bucket_bytes) {
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  GPT model(small_gpt(), 1);
  ZeroOptimizer engine(model, world, {stage, bucket_bytes}, [](std::vector<Tensor> ps) {
    return std::make_unique<SGD>(std::move(ps), 0.1, 0.9, 0.0);
  });
  Measured m;
  m.formula = engine.traffic_formula(accum);
  StepTraffic meter(world);
  for (int step = 0; step < 2; ++step) {
    meter.begin_step();
    for (int k = 0; k < accum; ++k) {
      engine.set_gradient_sync(k + 1 == accum);
      Batch b = data.train_batch(step * accum + k, world.rank(), world.size(), 2, 15);
      mul(model.loss(b.x, b.y), 1.0 / accum).backward();
    }
    engine.step(0.1, 1.0);
    meter.end_step();
    // Outside the steps: a loss all-reduce, as `minispeed train` does.
    Tensor l = full({1}, 1.0, DType::F64);
    world.all_reduce(l);
  }
  m.steps = meter.num_steps();
  bool match = false;
  traffic_report(world, meter, m.formula, &match);
  m.per_rank = gather_traffic(world, meter.in_steps());
  CHECK(match);
  return m;
}

}  // namespace

TEST_CASE("ledger: ZeRO stages 0-3 send exactly what the formula says", "[mpi][ledger][zero]") {
  Communicator world = Communicator::world();
  const int D = world.size();
  struct Case {
    int stage, accum;
    size_t bucket;
  };
  for (Case c : {Case{0, 1, 8 << 10}, Case{0, 2, 1 << 20}, Case{1, 2, 8 << 10}, Case{2, 1, 8 << 10},
                 Case{2, 2, 8 << 10}, Case{3, 1, 8 << 10}, Case{3, 2, 8 << 10}}) {
    INFO("stage " << c.stage << ", " << c.accum << " micro-steps, " << D << " ranks");
    Measured m = train(world, c.stage, c.accum, c.bucket);
    std::vector<OpCheck> checks = check_against_formula(m.per_rank, m.steps, m.formula);
    for (const OpCheck& k : checks) {
      INFO(comm_op_name(k.op) << ": formula " << k.formula_total << " summed over ranks per step");
      CHECK(k.match);
      // Flat groups are padded to a multiple of D: every rank's share is exact.
      if (k.op == CommOp::ReduceScatter || k.op == CommOp::AllGather)
        for (int64_t sent : k.sent) CHECK(sent * D == k.formula_total * m.steps);
    }
    // The ops the formula names are the ops that ran, nothing else.
    std::vector<CommOp> ran;
    for (const OpCheck& k : checks) ran.push_back(k.op);
    std::vector<CommOp> want =
        c.stage == 0
            ? std::vector<CommOp>{CommOp::AllReduce}
            : std::vector<CommOp>{CommOp::AllReduce, CommOp::ReduceScatter, CommOp::AllGather};
    CHECK(ran == want);
  }
}

TEST_CASE("ledger: a wrong formula is caught (the check can fail)", "[mpi][ledger][zero]") {
  Communicator world = Communicator::world();
  const int D = world.size();
  Measured m = train(world, 3, 1, 8 << 10);
  // Stage 3 measured against stage 1's formula: the second gather pass is extra.
  StepFormula wrong = m.formula;
  wrong.total[CommOp::AllGather].sent = m.formula.total[CommOp::ReduceScatter].sent;
  bool all = true;
  for (const OpCheck& k : check_against_formula(m.per_rank, m.steps, wrong)) all &= k.match;
  CHECK(!all);
  // 1.5x: stage 3 sends half again what stage 1 does, less the resident group's gathers.
  const int64_t rs = m.formula.total[CommOp::ReduceScatter].sent;
  const int64_t ag = m.formula.total[CommOp::AllGather].sent;
  CHECK(ag < 2 * rs);
  CHECK(ag > rs);
  if (D > 1) CHECK(rs % (D - 1) == 0);
}
