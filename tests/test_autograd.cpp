// Autograd: every differentiable op passes gradcheck (f64 central differences),
// and the engine accumulates, frees, retains, detaches and fires hooks as documented.
#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "catch_compat.h"

using namespace ms;

namespace {

Tensor param(const Shape& shape, Generator& gen, double lo = -1, double hi = 1) {
  return uniform(shape, gen, lo, hi, DType::F64).set_requires_grad(true);
}

void require_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                       const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  INFO(r.report);
  REQUIRE(r.ok);
}

using V = std::vector<Tensor>;

}  // namespace

TEST_CASE("gradcheck: elementwise ops with broadcasting", "[autograd][gradcheck]") {
  Generator gen(11);
  Tensor a = param({3, 4}, gen), b = param({4}, gen), c = param({3, 1}, gen);
  Tensor pos = param({3, 4}, gen, 0.5, 2.0);
  require_gradcheck([](const V& x) { return add(x[0], x[1]); }, {a, b});
  require_gradcheck([](const V& x) { return sub(x[0], x[1]); }, {a, c});
  require_gradcheck([](const V& x) { return mul(x[0], x[1]); }, {a, b});
  require_gradcheck([](const V& x) { return div(x[0], x[1]); }, {a, pos});
  require_gradcheck([](const V& x) { return div(x[1], x[0]); }, {pos, c});
  require_gradcheck([](const V& x) { return neg(x[0]) * 3.0 + 1.0; }, {a});
  require_gradcheck([](const V& x) { return exp(x[0]); }, {a});
  require_gradcheck([](const V& x) { return log(x[0]); }, {pos});
  require_gradcheck([](const V& x) { return tanh(x[0]); }, {a});
  require_gradcheck([](const V& x) { return sqrt(x[0]); }, {pos});
  require_gradcheck([](const V& x) { return pow(x[0], 3.0); }, {pos});
}

TEST_CASE("gradcheck: views and copies", "[autograd][gradcheck]") {
  Generator gen(12);
  Tensor a = param({2, 3, 4}, gen);
  require_gradcheck([](const V& x) { return reshape(x[0], {6, 4}); }, {a});
  require_gradcheck([](const V& x) { return reshape(transpose(x[0], 0, 2), {-1}); }, {a});
  require_gradcheck([](const V& x) { return permute(x[0], {2, 0, 1}); }, {a});
  require_gradcheck([](const V& x) { return narrow(x[0], 2, 1, 2); }, {a});
  require_gradcheck([](const V& x) { return select(x[0], 1, 2); }, {a});
  require_gradcheck([](const V& x) { return chunk(x[0], 2, 2)[1] * 2.0 + chunk(x[0], 2, 2)[0]; },
                    {a});
  require_gradcheck([](const V& x) { return unsqueeze(squeeze(narrow(x[0], 0, 0, 1), 0), 1); },
                    {a});
  require_gradcheck([](const V& x) { return expand(narrow(x[0], 1, 0, 1), {5, 2, 3, 4}); }, {a});
  require_gradcheck([](const V& x) { return cat({x[0], x[0] * 2.0}, 1); }, {a});
  // to() between compute dtypes is differentiable (finite differences through
  // f32 would be noise, so check the gradient directly).
  Tensor x = from_vector(std::vector<double>{1, 2}, {2}, DType::F64).set_requires_grad(true);
  Tensor y = to(x, DType::F32);
  CHECK(y.dtype() == DType::F32);
  sum(mul(y, from_vector(std::vector<float>{3, 4}, {2}))).backward();
  CHECK(x.grad().dtype() == DType::F64);
  CHECK(x.grad().to_vector() == std::vector<double>{3, 4});
}

TEST_CASE("gradcheck: reductions", "[autograd][gradcheck]") {
  Generator gen(13);
  Tensor a = param({3, 4, 5}, gen);
  require_gradcheck([](const V& x) { return sum(x[0]); }, {a});
  require_gradcheck([](const V& x) { return sum(x[0], {0, 2}); }, {a});
  require_gradcheck([](const V& x) { return sum(x[0], {1}, true); }, {a});
  require_gradcheck([](const V& x) { return mean(x[0], {-1}); }, {a});
  require_gradcheck([](const V& x) { return max(x[0], 1); }, {a});
  require_gradcheck([](const V& x) { return max(x[0]); }, {a});
}

TEST_CASE("gradcheck: matmul and linear", "[autograd][gradcheck]") {
  Generator gen(14);
  Tensor a = param({3, 4}, gen), b = param({4, 5}, gen);
  require_gradcheck([](const V& x) { return matmul(x[0], x[1]); }, {a, b});
  require_gradcheck([](const V& x) { return matmul(transpose(x[1], 0, 1), transpose(x[0], 0, 1)); },
                    {a, b});
  Tensor p = param({2, 3, 4}, gen), q = param({2, 4, 2}, gen);
  require_gradcheck([](const V& x) { return matmul(x[0], x[1]); }, {p, q});
  require_gradcheck([](const V& x) { return matmul(x[0], x[1]); }, {p, b});
  Tensor bias = param({5}, gen);
  require_gradcheck([](const V& x) { return linear(x[0], x[1], x[2]); }, {p, b, bias});
  require_gradcheck([](const V& x) { return linear(x[0], x[1]); }, {a, b});
}

TEST_CASE("gradcheck: fused kernels", "[autograd][gradcheck]") {
  Generator gen(15);
  Tensor a = param({3, 6}, gen, -2, 2);
  require_gradcheck([](const V& x) { return softmax(x[0]); }, {a});
  require_gradcheck([](const V& x) { return softmax(x[0], 0); }, {a});
  require_gradcheck([](const V& x) { return log_softmax(x[0]); }, {a});
  require_gradcheck([](const V& x) { return gelu(x[0]); }, {a});
  Tensor w = param({6}, gen, 0.5, 1.5), b = param({6}, gen);
  Tensor x3 = param({2, 3, 6}, gen, -2, 2);
  require_gradcheck([](const V& x) { return layernorm(x[0], x[1], x[2]); }, {x3, w, b});
  Tensor table = param({5, 4}, gen);
  Tensor idx = from_vector(std::vector<int32_t>{1, 4, 1, 0}, {2, 2});
  require_gradcheck([idx](const V& x) { return embedding(x[0], idx); }, {table});
  Tensor targets = from_vector(std::vector<int32_t>{0, 5, 2}, {3});
  require_gradcheck([targets](const V& x) { return cross_entropy(x[0], targets); }, {a});
}

TEST_CASE("gradcheck catches a wrong gradient", "[autograd][gradcheck]") {
  // x + (x - detach(x)) has value x (numeric derivative 1) but autograd
  // derivative 2: gradcheck must report the mismatch.
  Generator gen(16);
  Tensor a = param({4}, gen);
  auto wrong = [](const V& x) { return add(x[0], sub(x[0], detach(x[0]))); };
  GradcheckResult r = gradcheck(wrong, {a});
  CHECK_FALSE(r.ok);
  CHECK(r.report.find("analytic") != std::string::npos);
}

TEST_CASE("backward accumulates into .grad and supports retain_graph", "[autograd][engine]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}, DType::F64).set_requires_grad(true);
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward(Tensor(), /*retain_graph=*/true);
  CHECK(x.grad().to_vector() == std::vector<double>{2, 4, 6});
  y.backward();  // accumulates
  CHECK(x.grad().to_vector() == std::vector<double>{4, 8, 12});
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("retain_graph"));
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  // A tensor used twice receives both contributions.
  Tensor z = sum(add(x, x) * 3.0);
  z.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{6, 6, 6});
}

TEST_CASE("no_grad, detach and requires_grad rules", "[autograd][engine]") {
  Tensor x = ones({2}).set_requires_grad(true);
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
  }
  CHECK(grad_enabled());
  Tensor d = detach(x);
  CHECK_FALSE(d.requires_grad());
  CHECK(d.storage() == x.storage());
  Tensor y = x * 2.0;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK_THROWS_WITH(y.set_requires_grad(false), Catch::Contains("leaf"));
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("not a scalar"));
  CHECK_THROWS_WITH(sum(d).backward(), Catch::Contains("does not require grad"));
  CHECK_THROWS_WITH(from_vector(std::vector<int32_t>{1}, {1}).set_requires_grad(true),
                    Catch::Contains("i32"));
  y.backward(from_vector(std::vector<double>{1, 10}, {2}));
  CHECK(x.grad().to_vector() == std::vector<double>{2, 20});
}

TEST_CASE("gradient hooks fire once per leaf with the final gradient", "[autograd][hooks]") {
  Tensor w1 = ones({2}).set_requires_grad(true), w2 = ones({2}).set_requires_grad(true);
  std::vector<std::string> order;
  std::vector<double> seen;
  w1.register_grad_hook([&](Tensor& p) {
    order.push_back("w1");
    seen = p.grad().to_vector();
  });
  w2.register_grad_hook([&](Tensor&) { order.push_back("w2"); });
  // w1 is used in two places; its hook must see the sum of both.
  Tensor h = w1 * 3.0;
  Tensor out = sum(mul(h, w2)) + sum(w1);
  out.backward();
  CHECK(order.size() == 2);
  CHECK(std::count(order.begin(), order.end(), "w1") == 1);
  CHECK(seen == std::vector<double>{4, 4});
  CHECK_THROWS_WITH(h.register_grad_hook([](Tensor&) {}), Catch::Contains("leaf"));
}

TEST_CASE("a custom op whose backward returns the wrong gradient is an error",
          "[autograd][engine]") {
  Tensor x = ones({3}).set_requires_grad(true);
  Tensor s;
  {
    NoGradGuard no_grad;
    s = mul(x, 2.0);
  }
  record(s, "bad_op", {x}, [](const Tensor& g) { return std::vector<Tensor>{sum(g)}; });
  CHECK_THROWS_WITH(sum(s).backward(),
                    Catch::Contains("bad_op") && Catch::Contains("[3]") && Catch::Contains("[]"));
  Tensor y = ones({2}).set_requires_grad(true), t;
  {
    NoGradGuard no_grad;
    t = mul(y, 1.0);
  }
  record(t, "two_grads", {y}, [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
  CHECK_THROWS_WITH(sum(t).backward(),
                    Catch::Contains("two_grads") && Catch::Contains("2 gradients"));
  CHECK_THROWS_WITH(Tensor::make_view(ones({4}), {5}, {1}, 0), Catch::Contains("outside"));
  CHECK((2.0 * ones({2}) - 1.0).to_vector() == std::vector<double>{1, 1});
  CHECK((1.0 - ones({2})).to_vector() == std::vector<double>{0, 0});
  CHECK(from_vector({1.0, 2.5}, {2}).to_vector() == std::vector<double>{1, 2.5});
}

TEST_CASE("a graph dropped without backward frees all its memory (no reference cycles)",
          "[autograd][engine]") {
  Generator gen(17);
  Tensor x = uniform({2, 4, 6}, gen, -1, 1, DType::F64).set_requires_grad(true);
  Tensor w = uniform({6}, gen, 0.5, 1.5, DType::F64).set_requires_grad(true);
  size_t before = cpu_bytes_allocated();
  {
    Tensor y = softmax(x) + log_softmax(x, 0) + layernorm(x, w, w) + gelu(x) + exp(x) / (x + 3.0);
    Tensor z = causal_attention(cat({y, y, y}, 2), 2);
    Tensor loss = sum(matmul(z, transpose(z, 1, 2))) + max(y) + mean(tanh(y));
    CHECK(loss.requires_grad());
  }
  CHECK(cpu_bytes_allocated() == before);
}
