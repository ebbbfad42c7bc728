// Context-parallel attention (parallel/cp/cp_attention.h) against the serial
// causal_attention on the whole sequence: Ulysses, ring and zigzag at cp = 2
// and 4, forward output and backward dqkv, f64 and f32, with attention
// dropout, with tp-like local heads; the ledger's bytes against
// cp_traffic_formula; the errors.
//
// Every rank builds the same whole-sequence qkv from a seed, so the serial
// reference needs no communication; each cp rank feeds its rows
// (cp_positions order) to the cp op and compares its rows of the output and
// of the gradient. Only CHECK (never REQUIRE) after collectives.
//
// Tolerances: f64 1e-12 (the blocked merge adds in another order: measured
// ≤ 1.4e-15). f32 1e-5: values are O(1) (randn), each output a convex
// combination of at most T = 16 values and each gradient a sum of at most T
// terms of O(1); reassociating them and the merge's extra exp/log1p costs a
// few ulp per term, 16 · 4 · 6e-8 ≈ 4e-6 (measured ≤ 7.2e-7 at cp 2 and 4),
// while a real error (a wrong block, a missing rescale) is O(0.1). Ulysses
// runs the serial kernel on whole heads and matches bit for bit.
#include <cmath>
#include <vector>

#include "parallel/cp/cp_attention.h"
#include "parallel/cp/traffic.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

const CpAlgo kAlgos[] = {CpAlgo::Ulysses, CpAlgo::Ring, CpAlgo::Zigzag};

// Rows `pos` of dim 1 of t (B, T, W), in that order.
Tensor rows_at(const Tensor& t, const std::vector<int64_t>& pos) {
  std::vector<Tensor> parts;
  for (int64_t p : pos) parts.push_back(narrow(t, 1, p, 1));
  return contiguous(cat(parts, 1));
}

struct Shape4 {
  int64_t B, T, n_head, hs;
};

struct Outcome {
  double out_err = INFINITY, grad_err = INFINITY;
  Traffic fwd, bwd;
};

// Serial: all n_head heads over the whole sequence, then this tp rank's
// heads [head0, head0 + n_local) — the channels a tp rank's c_attn produces.
// cp: this rank's rows of those channels through cp_causal_attention.
Outcome compare(CpAlgo algo, Communicator& cp, const Shape4& s, int64_t n_local, int64_t head0,
                double p, DType dtype) {
  const int64_t C = s.n_head * s.hs, Cl = n_local * s.hs;
  Tensor qkv = to(seeded({s.B, s.T, 3 * C}, 11), dtype);  // (B, T, 3C)
  Tensor w = to(seeded({s.B, s.T, Cl}, 12), dtype);       // upstream gradient (B, T, Cl)
  // The tp rank's q|k|v channels: heads [head0, head0 + n_local) of each.
  std::vector<Tensor> parts;
  for (int i = 0; i < 3; ++i) parts.push_back(narrow(qkv, 2, i * C + head0 * s.hs, Cl));
  Tensor qkv_tp = leaf(contiguous(cat(parts, 2)));  // (B, T, 3Cl)
  Generator serial_gen(77);
  Tensor y = causal_attention(qkv_tp, n_local, p, serial_gen);  // (B, T, Cl)
  sum(y * w).backward();

  const std::vector<int64_t> pos = cp_positions(algo, s.T, cp.size(), cp.rank());
  Tensor local = leaf(rows_at(detach(qkv_tp), pos));  // (B, T/C, 3Cl)
  Generator cp_gen(77);
  Outcome o;
  Traffic t0 = cp.traffic();
  Tensor yl = cp_causal_attention(local, n_local, algo, cp, p, cp_gen);  // (B, T/C, Cl)
  Traffic t1 = cp.traffic();
  sum(yl * rows_at(w, pos)).backward();
  o.fwd = t1 - t0;
  o.bwd = cp.traffic() - t1;
  o.out_err = max_diff(yl, rows_at(detach(y), pos));
  o.grad_err = max_diff(local.grad(), rows_at(qkv_tp.grad(), pos));
  return o;
}

std::vector<int> cp_sizes(const Communicator& world) {
  return tp_sizes(world);  // 2 and 4 where they divide the world
}

}  // namespace

TEST_CASE("cp attention: every algorithm equals serial causal attention, forward and backward",
          "[mpi][cp]") {
  Communicator world = Communicator::world();
  const Shape4 s{2, 16, 4, 3};  // B, T, heads, head size: T divides 2·4, heads divide 4
  for (int c : cp_sizes(world)) {
    Communicator cp = world.split(world.rank() / c, world.rank() % c);
    for (CpAlgo algo : kAlgos)
      for (DType dtype : {DType::F64, DType::F32})
        for (double p : {0.0, 0.25}) {
          const double tol = dtype == DType::F64 ? 1e-12 : 1e-5;
          Outcome o = compare(algo, cp, s, s.n_head, 0, p, dtype);
          INFO(cp_algo_name(algo) << " cp " << c << " rank " << cp.rank() << " "
                                  << dtype_name(dtype) << " attn_p " << p);
          CHECK(o.out_err < tol);
          CHECK(o.grad_err < tol);
        }
  }
}

TEST_CASE("cp attention: bf16 inputs compute in f32 and round once, as the serial op",
          "[mpi][cp]") {
  Communicator world = Communicator::world();
  const Shape4 s{2, 16, 4, 3};
  for (int c : cp_sizes(world)) {
    Communicator cp = world.split(world.rank() / c, world.rank() % c);
    for (CpAlgo algo : kAlgos) {
      Outcome o = compare(algo, cp, s, s.n_head, 0, 0.0, DType::BF16);
      INFO(cp_algo_name(algo) << " cp " << c);
      // Both sides compute in f32 and round to bf16 (8 bits) once: at most
      // one ulp apart, 2^-6 for values in [2, 4); the gradients pass through
      // bf16 products as well (measured: outputs equal, gradients ≤ 7.7e-6).
      CHECK(o.out_err <= 1.0 / 64);
      CHECK(o.grad_err <= 1.0 / 16);
    }
  }
}

TEST_CASE("cp attention: tp-like local heads (n_head_local < n_head)", "[mpi][cp]") {
  Communicator world = Communicator::world();
  const Shape4 s{1, 16, 8, 2};  // 8 heads, this "tp rank" holds heads 4..7
  for (int c : cp_sizes(world)) {
    Communicator cp = world.split(world.rank() / c, world.rank() % c);
    for (CpAlgo algo : kAlgos) {
      Outcome o = compare(algo, cp, s, 4, 4, 0.0, DType::F64);
      INFO(cp_algo_name(algo) << " cp " << c);
      CHECK(o.out_err < 1e-12);
      CHECK(o.grad_err < 1e-12);
    }
  }
}

TEST_CASE("cp attention: the ledger's bytes equal cp_traffic_formula", "[mpi][cp]") {
  Communicator world = Communicator::world();
  const Shape4 s{2, 16, 4, 3};
  for (int c : cp_sizes(world)) {
    Communicator cp = world.split(world.rank() / c, world.rank() % c);
    for (CpAlgo algo : kAlgos)
      for (DType dtype : {DType::F64, DType::F32}) {
        Outcome o = compare(algo, cp, s, s.n_head, 0, 0.0, dtype);
        const int64_t e = int64_t(dtype_size(dtype)), Cl = s.n_head * s.hs;
        const CpLayerTraffic f = cp_traffic_formula(algo, s.B, s.T, Cl, c, e);
        INFO(cp_algo_name(algo) << " cp " << c << " " << dtype_name(dtype) << ": " << f.rule);
        CHECK(o.fwd[f.op].sent == f.forward);
        CHECK(o.bwd[f.op].sent == f.backward);
        CHECK(o.fwd.total().sent == f.forward);  // nothing else moves
        CHECK(o.bwd.total().sent == f.backward);
        // The formulas written out (traffic.h), per rank and layer:
        const int64_t n = s.B * s.T * Cl * e;
        if (algo == CpAlgo::Ulysses) {
          CHECK(f.forward == 4 * (c - 1) * n / (c * c));  // 4·(C−1)/C²·B·T·Cl·e
          CHECK(o.fwd[CommOp::AllToAll].calls == 2);
        } else {
          CHECK(f.forward == 2 * (c - 1) * n / c);       // 2·(C−1)/C·B·T·Cl·e
          CHECK(f.backward == 2 * (2 * c - 1) * n / c);  // K|V again + dK|dV home
          CHECK(o.fwd[CommOp::Send].calls == c - 1);
          CHECK(o.bwd[CommOp::Send].calls == (c - 1) + c);
        }
      }
  }
}

TEST_CASE("cp attention: bad head counts and sequence lengths are errors naming the cause",
          "[mpi][cp]") {
  Communicator world = Communicator::world();
  for (int c : cp_sizes(world)) {
    Communicator cp = world.split(world.rank() / c, world.rank() % c);
    Generator gen(1);
    // Ulysses: 6 heads do not divide over cp 4, 3 heads not over cp 2.
    const int64_t heads = c == 4 ? 6 : 3;
    Tensor qkv = zeros({1, 4, 3 * heads * 2});
    CHECK_THROWS_WITH(cp_causal_attention(qkv, heads, CpAlgo::Ulysses, cp, 0, gen),
                      Catch::Contains("do not divide over cp"));
    // Zigzag: T = 3·C does not cut into 2C chunks (T/C = 3 rows per rank).
    Tensor odd = zeros({1, 3, 3 * 4});
    CHECK_THROWS_WITH(cp_causal_attention(odd, 2, CpAlgo::Zigzag, cp, 0, gen),
                      Catch::Contains("must divide into 2·cp"));
    CHECK(cp.traffic().total().calls == 0);  // refused before any communication
  }
}
