// The MoE MLP (nn/moe.h) and its ops (autograd/ops_moe.h) against DeepSpeed's
// TopKGate definitions: assignments worked out by hand, f64 gradcheck of the
// router, the experts and the input through gating, combine and l_aux, an
// expert without tokens getting an exact zero gradient, and E = 1 being the
// dense MLP.
#include <cmath>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops_moe.h"
#include "catch_compat.h"
#include "nn/moe.h"

using namespace ms;

namespace {

std::vector<int> ints(const Tensor& t) {
  std::vector<int> out;
  for (double v : t.to_vector()) out.push_back(static_cast<int>(v));
  return out;
}

GPTConfig moe_config(int64_t E, int64_t k, double cf, bool drop, int64_t min_capacity = 0) {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 4, c.block_size = 8;
  c.moe.experts = E, c.moe.top_k = k, c.moe.capacity_factor = cf, c.moe.drop_tokens = drop;
  c.moe.min_capacity = min_capacity;
  return c;
}

// Gates (S, E) from rows of unnormalized scores, as probabilities.
Tensor gates_of(const std::vector<double>& scores, int64_t S, int64_t E) {
  return softmax(from_vector(scores, {S, E}, DType::F64), -1);
}

}  // namespace

TEST_CASE("capacity rounds as DeepSpeed's _capacity", "[moe]") {
  CHECK(moe_capacity(6, 3, {.k = 1, .capacity_factor = 1.0, .min_capacity = 0}) == 2);
  CHECK(moe_capacity(10, 3, {.k = 1, .capacity_factor = 1.0, .min_capacity = 0}) ==
        4);  // ceil(3.33)
  CHECK(moe_capacity(10, 3, {.k = 2, .capacity_factor = 1.0, .min_capacity = 0}) ==
        7);  // ceil(6.67)
  CHECK(moe_capacity(8, 4, {.k = 1, .capacity_factor = 1.25, .min_capacity = 0}) ==
        3);  // ceil(2.5)
  // In f32 as torch computes it, 12.5 · 1.2f = 15.000001: 16 slots. In f64
  // 12.5 · 1.2 is exactly 15.0 and the ceiling would be 15.
  CHECK(moe_capacity(25, 2, {.k = 1, .capacity_factor = 1.2, .min_capacity = 0}) == 16);
  CHECK(moe_capacity(6, 3, {.k = 1, .capacity_factor = 1.0, .min_capacity = 4}) == 4);  // the floor
}

TEST_CASE("top-1 with drops: the hand-computed assignment and weights", "[moe]") {
  // Choice 0 per token: 0, 0, 0, 1, 2, 0. Capacity ceil(6/3 · 1) = 2, so
  // expert 0 keeps tokens 0 and 1 (position order) and drops 2 and 5.
  const std::vector<double> scores = {3, 1, 0, 2, 0, 1, 1, 0, 0, 0, 2, 1, 0, 1, 3, 4, 0, 0};
  Tensor g = gates_of(scores, 6, 3);
  MoeRouting r = moe_route(g, {.k = 1, .capacity_factor = 1.0, .min_capacity = 0});
  CHECK(r.capacity == 2);
  CHECK(ints(r.expert) == std::vector<int>{0, 0, 0, 1, 2, 0});
  CHECK(ints(r.slot) == std::vector<int>{0, 1, -1, 0, 0, -1});
  CHECK(ints(r.counts) == std::vector<int>{4, 1, 1});
  CHECK(ints(r.kept) == std::vector<int>{2, 1, 1});
  CHECK(r.dropped() == 2);
  // Top-1 weights are the raw gate (no renormalization), 0 when dropped.
  auto gv = g.to_vector();
  auto w = moe_gate_weights(g, r).to_vector();
  CHECK(w[0] == gv[0]);
  CHECK(w[1] == gv[3]);
  CHECK(w[2] == 0.0);
  CHECK(w[3] == gv[9 + 1]);
  CHECK(w[5] == 0.0);
  // fraction_routed = first choices / S, before dropping.
  auto f = r.fraction.to_vector();
  CHECK(f[0] == 4.0 / 6);
  CHECK(f[1] == 1.0 / 6);
  CHECK(f[2] == 1.0 / 6);
}

TEST_CASE("top-2 with drops: second choices queue after all first choices", "[moe]") {
  // 4 tokens, 2 experts, capacity ceil(4/2 · 1 · 2) = 4. Choices:
  // t0 (0, 1), t1 (0, 1), t2 (0, 1), t3 (1, 0). Expert 0: first choices t0
  // t1 t2 at 0..2, then t3's second choice at 3. Expert 1: t3's first
  // choice at 0, then seconds from slot 1 (DeepSpeed's locations2 += the
  // first-choice count): t0 1, t1 2, t2 3.
  const std::vector<double> scores = {2, 0, 1, 0, 3, 0, 0, 1};
  Tensor g = gates_of(scores, 4, 2);
  MoeRouting r = moe_route(g, {.k = 2, .capacity_factor = 1.0, .min_capacity = 0});
  CHECK(r.capacity == 4);
  CHECK(ints(r.expert) == std::vector<int>{0, 1, 0, 1, 0, 1, 1, 0});
  CHECK(ints(r.slot) == std::vector<int>{0, 1, 1, 2, 2, 3, 0, 3});
  // capacity factor 0.5: capacity 2. Expert 0 keeps t0, t1 (firsts); t2's
  // first and t3's second drop. Expert 1: t3 first at 0, t0 second at 1,
  // t1 and t2 seconds drop.
  MoeRouting d = moe_route(g, {.k = 2, .capacity_factor = 0.5, .min_capacity = 0});
  CHECK(d.capacity == 2);
  CHECK(ints(d.slot) == std::vector<int>{0, 1, 1, -1, -1, -1, 0, -1});
  CHECK(ints(d.kept) == std::vector<int>{2, 2});
  CHECK(d.dropped() == 4);
  // Renormalized over the kept choices: t0 g0/(g0+g1) and g1/(g0+g1); t1
  // kept only its first choice, whose weight becomes 1; t2 kept none: 0, 0.
  auto gv = g.to_vector();
  auto w = moe_gate_weights(g, d).to_vector();
  CHECK(std::fabs(w[0] - gv[0] / (gv[0] + gv[1])) < 1e-15);
  CHECK(std::fabs(w[1] - gv[1] / (gv[0] + gv[1])) < 1e-15);
  CHECK(w[2] == 1.0);
  CHECK(w[3] == 0.0);
  CHECK(w[4] == 0.0);
  CHECK(w[5] == 0.0);
  CHECK(w[6] == 1.0);
  CHECK(w[7] == 0.0);
  // No dropping: capacity = the largest load (4 choices on each expert).
  MoeRouting n =
      moe_route(g, {.k = 2, .capacity_factor = 0.5, .min_capacity = 0, .drop_tokens = false});
  CHECK(n.capacity == 4);
  CHECK(n.dropped() == 0);
}

TEST_CASE("dispatch and combine move rows between tokens and expert slots", "[moe]") {
  Tensor g = gates_of({3, 1, 0, 2, 0, 1, 1, 0, 0, 0, 2, 1, 0, 1, 3, 4, 0, 0}, 6, 3);
  MoeRouting r = moe_route(g, {.k = 1, .capacity_factor = 1.0, .min_capacity = 0});
  Tensor x = reshape(arange(12, DType::F64), {6, 2});  // token s = (2s, 2s+1)
  auto buf = moe_dispatch(x, r).to_vector();           // (3, 2, 2)
  CHECK(buf == std::vector<double>{0, 1, 2, 3, 6, 7, 0, 0, 8, 9, 0, 0});
  Tensor y = reshape(arange(12, DType::F64), {3, 2, 2});
  Tensor w = from_vector({0.5, 2, 3, 4, 5, 6}, {6, 1}, DType::F64);
  auto out = moe_combine(y, w, r).to_vector();  // (6, 2)
  CHECK(out == std::vector<double>{0, 0.5, 4, 6, 0, 0, 16, 20, 40, 45, 0, 0});
}

TEST_CASE("gradcheck: router, experts and input through gate, combine and l_aux",
          "[moe][gradcheck]") {
  struct Case {
    int64_t k;
    double cf;
    bool drop;
  };
  for (Case c :
       {Case{1, 1.0, false}, Case{1, 0.5, true}, Case{2, 1.0, false}, Case{2, 0.5, true}}) {
    INFO("top-" << c.k << " capacity factor " << c.cf << " drop " << c.drop);
    Generator gen(7);
    GPTConfig cfg = moe_config(3, c.k, c.cf, c.drop);
    MoE moe(cfg, gen);
    moe.cast_parameters(DType::F64);
    // Distinct experts and a router with clear margins, so the ±1e-6 steps
    // never flip a routing decision.
    Generator init(11);
    {
      NoGradGuard no_grad;
      for (auto& [name, p] : moe.named_parameters()) {
        Tensor v = randn(p.shape(), init, 0, name == "router.weight" ? 1.0 : 0.5, DType::F64);
        copy_(p, v);
      }
    }
    Tensor x = randn({8, 4}, init, 0, 1, DType::F64).set_requires_grad(true);
    std::vector<Tensor> inputs = {x};
    for (auto& [name, p] : moe.named_parameters()) inputs.push_back(p);
    int64_t dropped = -1;
    auto f = [&](const std::vector<Tensor>& in) {
      Tensor y = moe.forward(in[0]);  // (8, 4)
      dropped = moe.last_routing().dropped();
      Tensor aux = reshape(moe.take_aux_loss(), {1});
      return cat({flatten(y), aux}, 0);
    };
    GradcheckResult res = gradcheck(f, inputs);
    INFO(res.report);
    CHECK(res.ok);
    CHECK((dropped > 0) == c.drop);  // the drop cases really drop
    CHECK(moe.router->weight.grad().defined());
  }
}

TEST_CASE("an expert that receives no token gets an exact zero gradient", "[moe]") {
  Generator gen(3);
  GPTConfig cfg = moe_config(4, 2, 1.0, true);
  MoE moe(cfg, gen);
  // Positive inputs and a negative router column: expert 3 is never chosen.
  Tensor w = moe.router->weight;  // (C, E)
  for (int64_t c = 0; c < 4; ++c) {
    NoGradGuard no_grad;
    Tensor cell = narrow(narrow(w, 0, c, 1), 1, 3, 1);
    fill_(cell, -1.0);
  }
  Generator data(5);
  Tensor x = uniform({2, 5, 4}, data, 0.5, 1.5);
  Tensor y = moe.forward(x);  // before take_aux_loss (argument order is unspecified)
  Tensor loss = add(sum(y), moe.take_aux_loss());
  REQUIRE(ints(moe.last_routing().counts)[3] == 0);
  loss.backward();
  for (auto& [name, p] : moe.experts[3]->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());  // present, so optimizer state advances
    for (double v : p.grad().to_vector()) CHECK(v == 0.0);
  }
  double other = 0;
  for (double v : moe.experts[0]->c_fc->weight.grad().to_vector()) other += std::fabs(v);
  CHECK(other > 0);
}

TEST_CASE("E = 1, top-1, no dropping is the dense MLP", "[moe]") {
  Generator gen(9);
  GPTConfig cfg = moe_config(1, 1, 1.0, false);
  MoE moe(cfg, gen);
  Generator gen2(10);
  MLP dense(cfg, gen2);
  auto src = moe.experts[0]->named_parameters(), dst = dense.named_parameters();
  {
    NoGradGuard no_grad;
    for (size_t i = 0; i < dst.size(); ++i) copy_(dst[i].second, src[i].second);
  }
  Generator data(1);
  Tensor x1 = randn({2, 5, 4}, data).set_requires_grad(true);
  Tensor x2 = clone(detach(x1)).set_requires_grad(true);
  Tensor y_moe = moe.forward(x1), y_dense = dense.forward(x2);
  CHECK(y_moe.to_vector() == y_dense.to_vector());
  sum(mul(y_moe, y_moe)).backward();
  sum(mul(y_dense, y_dense)).backward();
  CHECK(x1.grad().to_vector() == x2.grad().to_vector());
  for (size_t i = 0; i < dst.size(); ++i)
    CHECK(src[i].second.grad().to_vector() == dst[i].second.grad().to_vector());
  // One expert: every gate is 1, l_aux = 1 · 1 · 1.
  CHECK(moe.take_aux_loss().item() == 1.0);
}

TEST_CASE("l_aux is E · Σ mean(gate) · fraction of FIRST choices, for top-2 too", "[moe]") {
  for (int64_t k : {1, 2}) {
    INFO("top-" << k);
    Generator gen(21);
    GPTConfig cfg = moe_config(3, k, 0.5, true);  // with drops: l_aux ignores them
    MoE moe(cfg, gen);
    {
      NoGradGuard no_grad;
      copy_(moe.router->weight, randn({4, 3}, gen, 0, 1));
    }
    Generator data(22);
    Tensor x = randn({10, 4}, data);
    moe.forward(x);
    const double aux = moe.take_aux_loss().item();
    REQUIRE(moe.last_routing().dropped() > 0);
    std::vector<double> g = softmax(linear(x, moe.router->weight), -1).to_vector();  // (10, 3)
    std::vector<double> mean_gate(3, 0), first(3, 0), any(3, 0);
    for (int s = 0; s < 10; ++s) {
      int best = 0, second = -1;
      for (int e = 0; e < 3; ++e) {
        mean_gate[size_t(e)] += g[size_t(s * 3 + e)] / 10;
        if (g[size_t(s * 3 + e)] > g[size_t(s * 3 + best)]) best = e;
      }
      for (int e = 0; e < 3; ++e)
        if (e != best && (second < 0 || g[size_t(s * 3 + e)] > g[size_t(s * 3 + second)]))
          second = e;
      first[size_t(best)] += 1.0 / 10;
      any[size_t(best)] += 1.0 / 10;
      if (k == 2) any[size_t(second)] += 1.0 / 10;
    }
    double want = 0, with_both = 0;
    for (int e = 0; e < 3; ++e) {
      want += 3 * mean_gate[size_t(e)] * first[size_t(e)];
      with_both += 3 * mean_gate[size_t(e)] * any[size_t(e)];
    }
    CHECK(std::fabs(aux - want) < 1e-5);
    if (k == 2) CHECK(std::fabs(aux - with_both) > 1e-3);  // the second choices do not count
  }
}
