// The online-softmax pieces of ring attention (parallel/cp/online_softmax.h)
// against full softmax attention: partials over random key blocks, merged in
// any order, equal causal_attention; a fully masked block is the merge's
// identity; the blockwise backward from the final lse equals autograd's; and
// the cp layout helpers (cp_positions, cp_attention_flops, cp_traffic_formula).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "parallel/cp/cp_attention.h"
#include "parallel/cp/online_softmax.h"
#include "parallel/cp/traffic.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

constexpr int64_t B = 2, T = 12, NH = 3, HS = 4, W = NH * HS;

Tensor seeded(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen);
}

double max_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return INFINITY;
  std::vector<double> x = contiguous(a).to_vector(), y = contiguous(b).to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

std::vector<int64_t> iota_from(int64_t start, int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

// q, k, v views of a packed (B, T, 3W) qkv.
Tensor part(const Tensor& qkv, int i) {
  return narrow(qkv, 2, i * W, W);
}

// Key blocks of uneven sizes covering [0, T): 5, 1, 4, 2.
const std::vector<std::pair<int64_t, int64_t>> kBlocks = {{0, 5}, {5, 1}, {6, 4}, {10, 2}};

// log Σ_{j ≤ i} exp(q_i·k_j/√hs), by hand.
double naive_lse(const Tensor& qkv, int64_t b, int64_t h, int64_t i) {
  std::vector<double> x = contiguous(qkv).to_vector();
  auto at = [&](int64_t t, int64_t c) { return x[size_t((b * T + t) * 3 * W + c)]; };
  double m = -INFINITY;
  std::vector<double> s;
  for (int64_t j = 0; j <= i; ++j) {
    double d = 0;
    for (int64_t c = 0; c < HS; ++c) d += at(i, h * HS + c) * at(j, W + h * HS + c);
    s.push_back(d / std::sqrt(double(HS)));
    m = std::max(m, s.back());
  }
  double l = 0;
  for (double v : s) l += std::exp(v - m);
  return m + std::log(l);
}

}  // namespace

TEST_CASE("online softmax: partials over random key blocks merge to full causal attention",
          "[cp][online_softmax]") {
  for (DType dtype : {DType::F64, DType::F32}) {
    Tensor qkv = to(seeded({B, T, 3 * W}, 3), dtype);
    Tensor want = causal_attention(qkv, NH);  // (B, T, W)
    const std::vector<int64_t> q_pos = iota_from(0, T);
    std::vector<PartialAttention> parts;
    for (auto [start, len] : kBlocks)
      parts.push_back(attention_partial(part(qkv, 0), narrow(part(qkv, 1), 1, start, len),
                                        narrow(part(qkv, 2), 1, start, len), q_pos,
                                        iota_from(start, len), NH));
    const double tol = dtype == DType::F64 ? 1e-13 : 2e-6;
    // Every order of merging gives the same result (the merge is associative
    // and commutative up to rounding).
    std::vector<size_t> order(parts.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937 rng(5);
    for (int trial = 0; trial < 4; ++trial) {
      PartialAttention acc = empty_partial(B, T, NH, HS, dtype);
      for (size_t i : order) merge_partial(acc, parts[i]);
      INFO(dtype_name(dtype) << " trial " << trial);
      CHECK(max_diff(acc.out, want) < tol);
      std::vector<double> lse = acc.lse.to_vector();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < NH; ++h)
          for (int64_t i = 0; i < T; ++i)
            CHECK(std::fabs(lse[size_t((b * NH + h) * T + i)] - naive_lse(qkv, b, h, i)) <
                  tol * 10);
      std::shuffle(order.begin(), order.end(), rng);
    }
  }
}

TEST_CASE("online softmax: a fully masked block is the identity; a single row sees one key",
          "[cp][online_softmax]") {
  Tensor qkv = to(seeded({B, T, 3 * W}, 4), DType::F64);
  Tensor q = narrow(part(qkv, 0), 1, 0, 4);  // queries at positions 0..3
  const std::vector<int64_t> q_pos = iota_from(0, 4);
  // Keys at positions 8..11: after every query, so no pair is visible.
  PartialAttention masked = attention_partial(
      q, narrow(part(qkv, 1), 1, 8, 4), narrow(part(qkv, 2), 1, 8, 4), q_pos, iota_from(8, 4), NH);
  for (double l : masked.lse.to_vector()) CHECK(std::isinf(l));
  for (double o : masked.out.to_vector()) CHECK(o == 0);
  PartialAttention visible = attention_partial(
      q, narrow(part(qkv, 1), 1, 0, 4), narrow(part(qkv, 2), 1, 0, 4), q_pos, iota_from(0, 4), NH);
  PartialAttention merged{clone(visible.out), clone(visible.lse)};
  merge_partial(merged, masked);
  CHECK(max_diff(merged.out, visible.out) == 0);
  CHECK(max_diff(merged.lse, visible.lse) == 0);
  PartialAttention other_way{clone(masked.out), clone(masked.lse)};
  merge_partial(other_way, visible);
  CHECK(max_diff(other_way.out, visible.out) == 0);
  // Query 0 sees only key 0: its output is v_0 exactly, lse its one score.
  std::vector<double> out = visible.out.to_vector(), v = contiguous(part(qkv, 2)).to_vector();
  for (int64_t c = 0; c < W; ++c) CHECK(out[size_t(c)] == v[size_t(c)]);
}

TEST_CASE("online softmax: zigzag-like query positions and dropout match the serial rows",
          "[cp][online_softmax]") {
  Tensor qkv = to(seeded({B, T, 3 * W}, 6), DType::F64);
  Generator gen(9);
  DropoutMask mask = draw_dropout_mask({B, NH, T, T}, 0.3, gen);
  Tensor want = causal_attention(qkv, NH, mask);  // (B, T, W)
  // Queries at positions {1, 2, 9, 10} (two chunks), keys in two halves.
  const std::vector<int64_t> q_pos{1, 2, 9, 10};
  std::vector<Tensor> q_rows, want_rows;
  for (int64_t p : q_pos) {
    q_rows.push_back(narrow(part(qkv, 0), 1, p, 1));
    want_rows.push_back(narrow(want, 1, p, 1));
  }
  Tensor q = contiguous(cat(q_rows, 1));
  PartialAttention acc = empty_partial(B, 4, NH, HS, DType::F64);
  for (int64_t start : {6, 0})
    attention_accumulate(acc, q, narrow(part(qkv, 1), 1, start, 6),
                         narrow(part(qkv, 2), 1, start, 6), q_pos, iota_from(start, 6), NH, &mask);
  CHECK(max_diff(acc.out, cat(want_rows, 1)) < 1e-13);
}

TEST_CASE("online softmax: blockwise backward from the final lse equals autograd",
          "[cp][online_softmax]") {
  for (bool with_dropout : {false, true}) {
    Tensor x = to(seeded({B, T, 3 * W}, 7), DType::F64);
    Tensor qkv = clone(x);
    qkv.set_requires_grad(true);
    Generator gen(10);
    DropoutMask mask = draw_dropout_mask({B, NH, T, T}, 0.3, gen);
    Tensor g = to(seeded({B, T, W}, 8), DType::F64);
    Tensor y = with_dropout ? causal_attention(qkv, NH, mask) : causal_attention(qkv, NH);
    sum(y * g).backward();
    const DropoutMask* m = with_dropout ? &mask : nullptr;

    const std::vector<int64_t> q_pos = iota_from(0, T);
    PartialAttention acc = empty_partial(B, T, NH, HS, DType::F64);
    for (auto [start, len] : kBlocks)
      attention_accumulate(acc, part(x, 0), narrow(part(x, 1), 1, start, len),
                           narrow(part(x, 2), 1, start, len), q_pos, iota_from(start, len), NH, m);
    Tensor delta = attention_delta(g, acc.out, NH);
    Tensor dqkv = zeros({B, T, 3 * W}, DType::F64);
    for (auto [start, len] : kBlocks)
      attention_partial_backward(
          part(x, 0), narrow(part(x, 1), 1, start, len), narrow(part(x, 2), 1, start, len), g,
          acc.lse, delta, q_pos, iota_from(start, len), NH, m, part(dqkv, 0),
          narrow(part(dqkv, 1), 1, start, len), narrow(part(dqkv, 2), 1, start, len));
    INFO("dropout " << with_dropout);
    CHECK(max_diff(acc.out, y) < 1e-13);
    CHECK(max_diff(dqkv, qkv.grad()) < 1e-12);
  }
}

TEST_CASE("cp layout: positions, names, per-rank FLOPs and traffic formulas", "[cp]") {
  CHECK(cp_positions(CpAlgo::Ring, 8, 2, 1) == std::vector<int64_t>{4, 5, 6, 7});
  CHECK(cp_positions(CpAlgo::Ulysses, 8, 4, 2) == std::vector<int64_t>{4, 5});
  CHECK(cp_positions(CpAlgo::Zigzag, 8, 2, 0) == std::vector<int64_t>{0, 1, 6, 7});
  CHECK(cp_positions(CpAlgo::Zigzag, 8, 2, 1) == std::vector<int64_t>{2, 3, 4, 5});
  CHECK_THROWS_WITH(cp_positions(CpAlgo::Zigzag, 12, 4, 0),
                    Catch::Contains("T = 12 must divide into 2·cp = 8"));
  CHECK_THROWS_WITH(cp_positions(CpAlgo::Ring, 10, 4, 0), Catch::Contains("cp = 4"));
  for (CpAlgo a : {CpAlgo::Ulysses, CpAlgo::Ring, CpAlgo::Zigzag})
    CHECK(parse_cp_algo(cp_algo_name(a)) == a);
  CHECK_THROWS_WITH(parse_cp_algo("striped"), Catch::Contains("ulysses, ring, zigzag"));

  // FLOPs: 4·hs per causal (query, key) pair. T = 16, C = 4: ring rank r
  // scores Σ_{q=4r}^{4r+3} (q+1) keys per head: 10, 26, 42, 58; zigzag
  // gives every rank 34 (136 / 4); Ulysses does all 136 pairs on 1 of 4 heads.
  const int64_t b = 2, t = 16, nh = 4, hs = 8, unit = 4 * hs * b * nh;
  const int64_t ring[] = {10, 26, 42, 58};
  int64_t total[3] = {0, 0, 0};
  for (int r = 0; r < 4; ++r) {
    CHECK(cp_attention_flops(CpAlgo::Ring, b, t, nh, hs, 4, r) == unit * ring[r]);
    CHECK(cp_attention_flops(CpAlgo::Zigzag, b, t, nh, hs, 4, r) == unit * 34);
    CHECK(cp_attention_flops(CpAlgo::Ulysses, b, t, nh, hs, 4, r) == unit / 4 * 136);
    for (CpAlgo a : {CpAlgo::Ulysses, CpAlgo::Ring, CpAlgo::Zigzag})
      total[int(a)] += cp_attention_flops(a, b, t, nh, hs, 4, r);
  }
  for (int64_t x : total) CHECK(x == unit * t * (t + 1) / 2);  // the serial causal count

  // Traffic (traffic.h), B = 2, T = 16, Cl = 12, f32, per rank and layer.
  const int64_t n = 2 * 16 * 12 * 4;
  CpLayerTraffic u = cp_traffic_formula(CpAlgo::Ulysses, 2, 16, 12, 4, 4);
  CHECK(u.op == CommOp::AllToAll);
  CHECK(u.forward == 4 * 3 * n / 16);
  CHECK(u.backward == u.forward);
  CpLayerTraffic rg = cp_traffic_formula(CpAlgo::Ring, 2, 16, 12, 4, 4);
  CHECK(rg.op == CommOp::Send);
  CHECK(rg.forward == 2 * 3 * n / 4);
  CHECK(rg.backward == 2 * 7 * n / 4);
  CHECK(cp_traffic_formula(CpAlgo::Zigzag, 2, 16, 12, 1, 4).forward == 0);
}

TEST_CASE("online softmax: sequences longer than one 48-row tile, forward and backward",
          "[cp][online_softmax]") {
  // T = 100: three query tiles, two key blocks cutting through a tile, so the
  // tiles' key extents and the per-pair causal mask are both exercised.
  const int64_t t = 100, nh = 2, hs = 5, w = nh * hs;
  Tensor x = to(seeded({1, t, 3 * w}, 21), DType::F64);
  Tensor qkv = clone(x);
  qkv.set_requires_grad(true);
  Tensor g = to(seeded({1, t, w}, 22), DType::F64);
  Tensor y = causal_attention(qkv, nh);
  sum(y * g).backward();
  auto q = narrow(x, 2, 0, w), k = narrow(x, 2, w, w), v = narrow(x, 2, 2 * w, w);
  const std::vector<int64_t> q_pos = iota_from(0, t);
  const std::vector<std::pair<int64_t, int64_t>> blocks = {{60, 40}, {0, 60}};
  PartialAttention acc = empty_partial(1, t, nh, hs, DType::F64);
  for (auto [start, len] : blocks)
    attention_accumulate(acc, q, narrow(k, 1, start, len), narrow(v, 1, start, len), q_pos,
                         iota_from(start, len), nh);
  CHECK(max_diff(acc.out, y) < 1e-13);
  Tensor delta = attention_delta(g, acc.out, nh);
  Tensor dqkv = zeros({1, t, 3 * w}, DType::F64);
  for (auto [start, len] : blocks)
    attention_partial_backward(q, narrow(k, 1, start, len), narrow(v, 1, start, len), g, acc.lse,
                               delta, q_pos, iota_from(start, len), nh, nullptr,
                               narrow(dqkv, 2, 0, w), narrow(narrow(dqkv, 2, w, w), 1, start, len),
                               narrow(narrow(dqkv, 2, 2 * w, w), 1, start, len));
  CHECK(max_diff(dqkv, qkv.grad()) < 1e-12);
}
