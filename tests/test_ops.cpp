// Every op against a naive reference written with plain loops over to_vector().
#include <omp.h>

#include <cmath>
#include <functional>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "catch_compat.h"
#include "tensor/cpu/adamw.h"
#include "tensor/cpu/reductions.h"

using namespace ms;

namespace {

std::vector<double> naive_matmul(const std::vector<double>& a, const std::vector<double>& b,
                                 int64_t M, int64_t K, int64_t N) {
  std::vector<double> c(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) c[i * N + j] += a[i * K + k] * b[k * N + j];
  return c;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(std::fabs(got[i] - want[i]) <= tol * (1 + std::fabs(want[i])));
  }
}

}  // namespace

TEST_CASE("elementwise ops match scalar math, f32 and f64", "[ops][elementwise]") {
  Generator gen(1);
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor a = uniform({3, 5}, gen, 0.5, 2.0, dt), b = uniform({3, 5}, gen, 0.5, 2.0, dt);
    auto va = a.to_vector(), vb = b.to_vector();
    auto each = [&](auto f) {
      std::vector<double> r;
      for (size_t i = 0; i < va.size(); ++i) r.push_back(f(va[i], vb[i]));
      return r;
    };
    double tol = dt == DType::F32 ? 1e-6 : 1e-14;
    check_close(add(a, b).to_vector(), each([](double x, double y) { return x + y; }), tol);
    check_close(sub(a, b).to_vector(), each([](double x, double y) { return x - y; }), tol);
    check_close(mul(a, b).to_vector(), each([](double x, double y) { return x * y; }), tol);
    check_close(div(a, b).to_vector(), each([](double x, double y) { return x / y; }), tol);
    check_close(neg(a).to_vector(), each([](double x, double) { return -x; }), tol);
    check_close(exp(a).to_vector(), each([](double x, double) { return std::exp(x); }), tol);
    check_close(log(a).to_vector(), each([](double x, double) { return std::log(x); }), tol);
    check_close(tanh(a).to_vector(), each([](double x, double) { return std::tanh(x); }), tol);
    check_close(sqrt(a).to_vector(), each([](double x, double) { return std::sqrt(x); }), tol);
    check_close(pow(a, 3.0).to_vector(), each([](double x, double) { return x * x * x; }), tol);
    check_close((a * 2.0 + 1.0).to_vector(), each([](double x, double) { return 2 * x + 1; }), tol);
    // Strided (transposed) inputs take the general loop.
    Tensor at = transpose(a, 0, 1), bt = transpose(b, 0, 1);
    check_close(contiguous(transpose(mul(at, bt), 0, 1)).to_vector(),
                each([](double x, double y) { return x * y; }), tol);
  }
}

TEST_CASE("broadcasting follows numpy", "[ops][broadcast]") {
  Tensor a = reshape(arange(6), {2, 3});
  Tensor row = from_vector(std::vector<double>{10, 20, 30}, {3});
  Tensor col = from_vector(std::vector<double>{100, 200}, {2, 1});
  CHECK(add(a, row).to_vector() == std::vector<double>{10, 21, 32, 13, 24, 35});
  CHECK(add(a, col).to_vector() == std::vector<double>{100, 101, 102, 203, 204, 205});
  CHECK(add(col, row).shape() == Shape{2, 3});
  CHECK(mul(full({}, 2.0), a).to_vector() == std::vector<double>{0, 2, 4, 6, 8, 10});
  CHECK(broadcast_shapes({5, 1, 4}, {3, 1}, "t") == Shape{5, 3, 4});
  CHECK_THROWS_WITH(add(a, ones({2})), Catch::Contains("add") && Catch::Contains("[2, 3]") &&
                                           Catch::Contains("[2]") &&
                                           Catch::Contains("do not broadcast"));
  CHECK_THROWS_WITH(add(a, ones({3}, DType::F64)),
                    Catch::Contains("add") && Catch::Contains("f32") && Catch::Contains("f64"));
}

TEST_CASE("reductions: sum, mean, max over dims with keepdim", "[ops][reduce]") {
  Tensor t = reshape(arange(24, DType::F64), {2, 3, 4});
  auto v = t.to_vector();
  CHECK(sum(t).item() == 276.0);
  CHECK(mean(t).item() == 11.5);
  Tensor s1 = sum(t, {1});
  CHECK(s1.shape() == Shape{2, 4});
  std::vector<double> want(8, 0.0);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) want[i * 4 + k] += v[i * 12 + j * 4 + k];
  CHECK(s1.to_vector() == want);
  Tensor s02 = sum(t, {0, 2}, true);  // non-adjacent dims: permuted path
  CHECK(s02.shape() == Shape{1, 3, 1});
  std::vector<double> want02(3, 0.0);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) want02[j] += v[i * 12 + j * 4 + k];
  CHECK(s02.to_vector() == want02);
  CHECK(sum(t, {-1}).shape() == Shape{2, 3});
  CHECK(mean(t, {0}).to_vector()[0] == 6.0);
  Tensor m = max(from_vector(std::vector<double>{1, 5, 3, 7, 2, 0}, {2, 3}), 1);
  CHECK(m.to_vector() == std::vector<double>{5, 7});
  CHECK(max(t).item() == 23.0);
  CHECK_THROWS_WITH(sum(t, {3}), Catch::Contains("sum") && Catch::Contains("dim 3"));
  CHECK_THROWS_WITH(sum(t, {1, 1}), Catch::Contains("repeated"));
}

TEST_CASE("matmul matches a naive triple loop, with transposed and batched operands",
          "[ops][matmul]") {
  Generator gen(3);
  for (DType dt : {DType::F32, DType::F64}) {
    double tol = dt == DType::F32 ? 1e-5 : 1e-12;
    Tensor a = randn({7, 13}, gen, 0, 1, dt), b = randn({13, 5}, gen, 0, 1, dt);
    check_close(matmul(a, b).to_vector(), naive_matmul(a.to_vector(), b.to_vector(), 7, 13, 5),
                tol);
    // Aᵀ·B and A·Bᵀ through views.
    Tensor at = randn({13, 7}, gen, 0, 1, dt), bt = randn({5, 13}, gen, 0, 1, dt);
    check_close(matmul(transpose(at, 0, 1), transpose(bt, 0, 1)).to_vector(),
                naive_matmul(contiguous(transpose(at, 0, 1)).to_vector(),
                             contiguous(transpose(bt, 0, 1)).to_vector(), 7, 13, 5),
                tol);
    // Batched (2, 3, 4, 6) @ (2, 3, 6, 5).
    Tensor x = randn({2, 3, 4, 6}, gen, 0, 1, dt), y = randn({2, 3, 6, 5}, gen, 0, 1, dt);
    Tensor z = matmul(x, y);
    REQUIRE(z.shape() == Shape{2, 3, 4, 5});
    for (int64_t i = 0; i < 6; ++i) {
      Tensor xi = select(reshape(x, {6, 4, 6}), 0, i), yi = select(reshape(y, {6, 6, 5}), 0, i);
      check_close(select(reshape(z, {6, 4, 5}), 0, i).to_vector(),
                  naive_matmul(xi.to_vector(), yi.to_vector(), 4, 6, 5), tol);
    }
    // (B, T, C) @ (C, N)
    Tensor w = randn({6, 3}, gen, 0, 1, dt);
    Tensor xw = matmul(x, w);
    CHECK(xw.shape() == Shape{2, 3, 4, 3});
    check_close(xw.to_vector(), naive_matmul(x.to_vector(), w.to_vector(), 24, 6, 3), tol);
  }
  CHECK_THROWS_WITH(matmul(ones({2, 3}), ones({4, 5})), Catch::Contains("matmul") &&
                                                            Catch::Contains("[2, 3]") &&
                                                            Catch::Contains("[4, 5]"));
  CHECK_THROWS_WITH(matmul(ones({2, 2, 3}), ones({3, 3, 5})), Catch::Contains("batch"));
}

TEST_CASE("linear = x·W + b in Conv1D layout", "[ops][matmul]") {
  Generator gen(4);
  Tensor x = randn({2, 3, 4}, gen), w = randn({4, 5}, gen), b = randn({5}, gen);
  Tensor y = linear(x, w, b);
  REQUIRE(y.shape() == Shape{2, 3, 5});
  auto want = naive_matmul(x.to_vector(), w.to_vector(), 6, 4, 5);
  auto vb = b.to_vector();
  for (size_t i = 0; i < want.size(); ++i) want[i] += vb[i % 5];
  check_close(y.to_vector(), want, 1e-5);
  CHECK_THROWS_WITH(linear(x, w, ones({4})), Catch::Contains("linear") && Catch::Contains("bias"));
}

TEST_CASE("fused kernels match naive formulas", "[ops][fused]") {
  Generator gen(5);
  Tensor x = randn({4, 7}, gen, 0, 2, DType::F64);
  auto v = x.to_vector();
  // softmax / log_softmax
  std::vector<double> sm(28), lsm(28);
  for (int r = 0; r < 4; ++r) {
    double z = 0;
    for (int c = 0; c < 7; ++c) z += std::exp(v[r * 7 + c]);
    for (int c = 0; c < 7; ++c) {
      sm[r * 7 + c] = std::exp(v[r * 7 + c]) / z;
      lsm[r * 7 + c] = v[r * 7 + c] - std::log(z);
    }
  }
  check_close(softmax(x).to_vector(), sm, 1e-12);
  check_close(log_softmax(x).to_vector(), lsm, 1e-12);
  // softmax over dim 0 equals softmax of the transpose.
  check_close(softmax(x, 0).to_vector(),
              contiguous(transpose(softmax(transpose(x, 0, 1)), 0, 1)).to_vector(), 1e-12);
  // layernorm
  Tensor w = randn({7}, gen, 1, 0.1, DType::F64), b = randn({7}, gen, 0, 0.1, DType::F64);
  auto vw = w.to_vector(), vb = b.to_vector();
  std::vector<double> ln(28);
  for (int r = 0; r < 4; ++r) {
    double m = 0, var = 0;
    for (int c = 0; c < 7; ++c) m += v[r * 7 + c] / 7;
    for (int c = 0; c < 7; ++c) var += (v[r * 7 + c] - m) * (v[r * 7 + c] - m) / 7;
    for (int c = 0; c < 7; ++c)
      ln[r * 7 + c] = (v[r * 7 + c] - m) / std::sqrt(var + 1e-5) * vw[c] + vb[c];
  }
  check_close(layernorm(x, w, b).to_vector(), ln, 1e-12);
  // gelu (tanh approximation)
  std::vector<double> g(28);
  for (int i = 0; i < 28; ++i)
    g[i] =
        0.5 * v[i] * (1 + std::tanh(std::sqrt(2 / M_PI) * (v[i] + 0.044715 * v[i] * v[i] * v[i])));
  check_close(gelu(x).to_vector(), g, 1e-12);
  // embedding
  Tensor table = reshape(arange(12, DType::F64), {4, 3});
  Tensor idx = from_vector(std::vector<int32_t>{3, 0, 3}, {3});
  CHECK(embedding(table, idx).to_vector() == std::vector<double>{9, 10, 11, 0, 1, 2, 9, 10, 11});
  CHECK(embedding(table, reshape(idx, {1, 3})).shape() == Shape{1, 3, 3});
  CHECK_THROWS_WITH(
      embedding(table, from_vector(std::vector<int32_t>{4}, {1})),
      Catch::Contains("embedding") && Catch::Contains("value 4") && Catch::Contains("[0, 4)"));
  // cross-entropy = mean of -log_softmax at the target
  Tensor t = from_vector(std::vector<int32_t>{0, 6, 3, 2}, {4});
  double ce = 0;
  for (int r = 0; r < 4; ++r) ce -= lsm[r * 7 + std::vector<int>{0, 6, 3, 2}[r]] / 4;
  CHECK(std::fabs(cross_entropy(x, t).item() - ce) < 1e-12);
  CHECK_THROWS_WITH(
      cross_entropy(x, from_vector(std::vector<int32_t>{0, 1}, {2})),
      Catch::Contains("cross_entropy") && Catch::Contains("[4, 7]") && Catch::Contains("[2]"));
}

TEST_CASE("in-place ops refuse tensors in the graph", "[ops][inplace]") {
  Tensor p = ones({3}).set_requires_grad(true);
  CHECK_THROWS_WITH(add_(p, ones({3})), Catch::Contains("add_") && Catch::Contains("NoGradGuard"));
  Tensor q = zeros({3});
  add_(q, ones({3}), 2.0);
  CHECK(q.to_vector() == std::vector<double>{2, 2, 2});
  mul_(q, 0.5);
  CHECK(q.to_vector() == std::vector<double>{1, 1, 1});
}

#include "tensor/cpu/vec_math.h"

TEST_CASE("vectorizable exp and tanh agree with libm", "[ops][vec_math]") {
  double worst_exp = 0, worst_tanh = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.001953125f) {
    double want = std::exp(static_cast<double>(x));
    worst_exp = std::max(worst_exp, std::fabs(cpu::fast_expf(x) - want) / want);
  }
  for (float x = -12.0f; x <= 12.0f; x += 0.0009765625f)
    worst_tanh =
        std::max(worst_tanh, std::fabs(cpu::fast_tanhf(x) - std::tanh(static_cast<double>(x))));
  INFO("exp max relative error " << worst_exp << ", tanh max absolute error " << worst_tanh);
  CHECK(worst_exp < 2.5e-7);  // 2 ulp
  CHECK(worst_tanh < 2e-7);
  CHECK(cpu::fast_expf(0.0f) == 1.0f);
  CHECK(cpu::fast_tanhf(20.0f) == 1.0f);
  CHECK(cpu::fast_tanhf(-20.0f) == -1.0f);
}

namespace {

// Runs f on f64 inputs and on the same values rounded to f32, backpropagates a
// fixed random weighting of the output, and compares value and input gradients:
// the f32 kernels (vectorized per ISA, f32 accumulators) against the f64 path.
template <typename F>
void check_f32_against_f64(const std::vector<Tensor>& inputs64, F f, double tol) {
  std::vector<Tensor> in64, in32;
  for (const Tensor& t : inputs64) {
    in64.push_back(clone(t).set_requires_grad(true));
    in32.push_back(to(t, DType::F32).set_requires_grad(true));
  }
  Tensor out64 = f(in64), out32 = f(in32);
  Generator gen(11);
  Tensor r = randn(out64.shape(), gen, 0, 1, DType::F64);
  sum(mul(out64, r)).backward();
  sum(mul(out32, to(r, DType::F32))).backward();
  check_close(out32.to_vector(), out64.to_vector(), tol);
  for (size_t i = 0; i < in64.size(); ++i) {
    INFO("gradient of input " << i);
    check_close(in32[i].grad().to_vector(), in64[i].grad().to_vector(), tol);
  }
}

}  // namespace

TEST_CASE("f32 fused kernels agree with their f64 path on model-sized rows", "[ops][fused][f32]") {
  Generator gen(21);
  // LayerNorm: enough rows to run threaded, C not a multiple of the vector width.
  check_f32_against_f64(
      {randn({70, 259}, gen, 0.5, 2, DType::F64), randn({259}, gen, 1, 0.1, DType::F64),
       randn({259}, gen, 0, 0.1, DType::F64)},
      [](const std::vector<Tensor>& t) { return layernorm(t[0], t[1], t[2]); }, 2e-5);
  // Causal attention: rows of every length 1..T, three row blocks, vectorized softmax.
  check_f32_against_f64(
      {randn({2, 100, 3 * 48}, gen, 0, 1, DType::F64)},
      [](const std::vector<Tensor>& t) { return causal_attention(t[0], 4); }, 2e-5);
  // Cross-entropy over a 259-wide vocabulary (vectorized exp in both directions).
  std::vector<int32_t> targets(70);
  for (int32_t i = 0; i < 70; ++i) targets[size_t(i)] = (i * 37) % 259;
  Tensor tgt = from_vector(targets, {70});
  check_f32_against_f64(
      {randn({70, 259}, gen, 0, 3, DType::F64)},
      [&](const std::vector<Tensor>& t) { return cross_entropy(t[0], tgt); }, 2e-5);
  // linear with bias (gemm_f32_bias) and its bias gradient (column sums).
  check_f32_against_f64(
      {randn({3, 70, 45}, gen, 0, 1, DType::F64), randn({45, 300}, gen, 0, 0.2, DType::F64),
       randn({300}, gen, 0, 1, DType::F64)},
      [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); }, 2e-5);
}

TEST_CASE("causal attention over several row blocks matches unfused ops and their gradient",
          "[ops][attention]") {
  // T = 113 spans three of the kernel's causal row blocks (48 rows), the last one partial.
  const int64_t B = 2, T = 113, NH = 3, hs = 4, C = NH * hs;
  Generator gen(33);
  Tensor qkv = uniform({B, T, 3 * C}, gen, -1, 1, DType::F64);
  Tensor a = clone(qkv).set_requires_grad(true), b = clone(qkv).set_requires_grad(true);
  auto heads = [&](const Tensor& t) { return permute(reshape(t, {B, T, NH, hs}), {0, 2, 1, 3}); };
  Tensor q = narrow(b, 2, 0, C), k = narrow(b, 2, C, C), v = narrow(b, 2, 2 * C, C);
  Tensor s = mul(matmul(heads(q), transpose(heads(k), -1, -2)), 1 / std::sqrt(double(hs)));
  std::vector<double> mask(T * T);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) mask[i * T + j] = j > i ? -INFINITY : 0;
  Tensor att = softmax(add(s, from_vector(mask, {T, T}, DType::F64)));
  Tensor want = reshape(permute(matmul(att, heads(v)), {0, 2, 1, 3}), {B, T, C});
  Tensor got = causal_attention(a, NH);
  check_close(got.to_vector(), want.to_vector(), 1e-12);
  Tensor r = randn({B, T, C}, gen, 0, 1, DType::F64);
  sum(mul(got, r)).backward();
  sum(mul(want, r)).backward();
  check_close(a.grad().to_vector(), b.grad().to_vector(), 1e-11);
}

// ---- linear's fused bias gradient (autograd/ops_matmul.cpp) against its unfused twin ----

namespace {

// Runs f(x, w, b) forward and backward (a fixed random output weighting) and
// returns the output and the three gradients, flattened.
std::vector<std::vector<double>> linear_run(
    const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f, const Tensor& x0,
    const Tensor& w0, const Tensor& b0, const Tensor& r) {
  Tensor x = detach(x0).set_requires_grad(true), w = detach(w0).set_requires_grad(true);
  Tensor b = detach(b0).set_requires_grad(true);
  Tensor out = f(x, w, b);
  sum(mul(out, r)).backward();
  return {out.to_vector(), x.grad().to_vector(), w.grad().to_vector(),
          b.grad().defined() ? b.grad().to_vector() : std::vector<double>{}};
}

}  // namespace

TEST_CASE("linear's fused bias gradient equals matmul and sum, f32", "[ops][fused]") {
  Generator gen(29);
  Tensor x = uniform({5, 11, 37}, gen, -1, 1), w = uniform({37, 45}, gen, -1, 1);
  Tensor b = uniform({45}, gen, -1, 1), r = uniform({5, 11, 45}, gen, -1, 1);
  auto fused = linear_run(
      [](const Tensor& a, const Tensor& w_, const Tensor& b_) { return linear(a, w_, b_); }, x, w,
      b, r);
  // The unfused twin: the same product written as matmul + add.
  auto plain = linear_run(
      [](const Tensor& a, const Tensor& w_, const Tensor& b_) { return add(matmul(a, w_), b_); },
      x, w, b, r);
  for (int i = 0; i < 4; ++i) check_close(fused[i], plain[i], 1e-5);
  // Odd shapes, one output column (the gemv path), and GEMMs split over 2 threads.
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2})
    for (Shape xs : {Shape{3, 5, 7}, Shape{130, 300}, Shape{1, 13}}) {
      omp_set_num_threads(threads);
      for (int64_t out : {int64_t{1}, int64_t{9}, int64_t{129}}) {
        const int64_t in = xs.back();
        Tensor x3 = uniform(xs, gen, -1, 1), w3 = uniform({in, out}, gen, -1, 1);
        Tensor b3 = uniform({out}, gen, -1, 1);
        Shape ys = xs;
        ys.back() = out;
        Tensor r3 = uniform(ys, gen, -1, 1);
        auto f3 = linear_run(
            [](const Tensor& a, const Tensor& w_, const Tensor& b_) { return linear(a, w_, b_); },
            x3, w3, b3, r3);
        auto p3 = linear_run([](const Tensor& a, const Tensor& w_,
                                const Tensor& b_) { return add(matmul(a, w_), b_); },
                             x3, w3, b3, r3);
        INFO("x " << shape_str(xs) << " out " << out << " threads " << threads);
        for (int i = 0; i < 4; ++i) check_close(f3[i], p3[i], 1e-5);
      }
    }
  omp_set_num_threads(saved);
  // A bias gradient without a weight gradient (frozen weight): the plain sum.
  Tensor xb = detach(x), bb = detach(b).set_requires_grad(true);
  sum(mul(linear(xb, w, bb), r)).backward();
  check_close(bb.grad().to_vector(), plain[3], 1e-5);
}

TEST_CASE("AdamW's vectorized kernel equals the update written out in double", "[ops][optim]") {
  // 3 chunks of 2^14 and a ragged tail: the parallel split and every clone's tail loop.
  const int64_t n = 3 * (1 << 14) + 37;
  Generator gen(37);
  std::vector<double> g = uniform({n}, gen, -1, 1).to_vector();
  std::vector<double> p0 = uniform({n}, gen, -1, 1).to_vector();
  std::vector<double> m0 = uniform({n}, gen, -0.1, 0.1).to_vector();
  std::vector<double> v0 = uniform({n}, gen, 0, 0.01).to_vector();
  std::vector<float> p(p0.begin(), p0.end()), m(m0.begin(), m0.end()), v(v0.begin(), v0.end());
  std::vector<float> gf(g.begin(), g.end());
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, t = 3;
  const double bc2_sqrt = std::sqrt(1 - std::pow(b2, t)), step = lr / (1 - std::pow(b1, t));
  cpu::adamw_update(p.data(), m.data(), v.data(), gf.data(), n, float(step), float(1 - lr * wd),
                    float(b1), float(b2), float(1 - b1), float(1 - b2), float(bc2_sqrt),
                    float(eps));
  int64_t bad = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double gj = double(gf[j]);
    const double mj = b1 * double(float(m0[j])) + (1 - b1) * gj;
    const double vj = b2 * double(float(v0[j])) + (1 - b2) * gj * gj;
    const double pj = double(float(p0[j])) * (1 - lr * wd) - step * mj / (std::sqrt(vj) / bc2_sqrt + eps);
    const bool ok = std::fabs(m[j] - mj) <= 1e-6 * (1 + std::fabs(mj)) &&
                    std::fabs(v[j] - vj) <= 1e-6 * (1 + std::fabs(vj)) &&
                    std::fabs(p[j] - pj) <= 1e-6 * (1 + std::fabs(pj));
    if (!ok && bad++ < 3) UNSCOPED_INFO("j " << j << ": p " << p[j] << " want " << pj);
  }
  CHECK(bad == 0);
}

TEST_CASE("sum_squares (clipping's norm) equals the double loop, the same at 1 and 2 threads",
          "[ops][optim]") {
  const int64_t n = 5 * (1 << 14) + 11;  // over the parallel threshold, a ragged last span
  Generator gen(41);
  std::vector<double> x = uniform({n}, gen, -3, 3).to_vector();
  std::vector<float> xf(x.begin(), x.end());
  double want = 0;
  for (float v : xf) want += double(v) * double(v);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = cpu::sum_squares(xf.data(), n);
  omp_set_num_threads(2);
  const double two = cpu::sum_squares(xf.data(), n);
  omp_set_num_threads(saved);
  CHECK(std::fabs(one - want) <= 1e-12 * want);
  CHECK(one == two);  // fixed spans, added in span order
}
