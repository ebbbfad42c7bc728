// [cuda] Every elementwise / normalization / loss / optimizer kernel in
// tensor/cuda/ against its tensor/cpu/ twin, forward and backward, on odd
// shapes (C = 1, rows not a multiple of a block). Each test skips, visibly,
// without a CUDA device. Tolerances are per kernel: f32 differences come from
// a different summation order (tree reductions, atomics) and the GPU's
// exp/tanh, so they scale with the row length; f64 must agree to ~1e-12.
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensor/cpu/adamw.h"
#include "tensor/cpu/cross_entropy.h"
#include "tensor/cpu/embedding.h"
#include "tensor/cpu/gelu.h"
#include "tensor/cpu/layernorm.h"
#include "tensor/cpu/reductions.h"
#include "tensor/cpu/softmax.h"
#include "tensor/cuda/kernels.h"
#include "tests/cuda/test_cuda_kernels_util.h"

using namespace ms::cudatest;

namespace {

// Relative tolerance of one kernel's output, by precision.
template <typename T>
double tol(double f32_tol) {
  return sizeof(T) == 4 ? f32_tol : 1e-12;
}

// (N, C) shapes every row-wise kernel runs: C = 1, a row shorter than a warp,
// one not a multiple of 32 or of the block, GPT-2's C, and a long row.
const std::vector<std::pair<int64_t, int64_t>> kRowShapes = {
    {1, 1}, {5, 1}, {3, 7}, {17, 33}, {9, 768}, {4, 1000}, {2, 3000}};

}  // namespace

// The reference is the f64 CPU kernel on the same inputs, not the f32 CPU
// twin: that one uses fast_tanhf, whose last bits differ with the ISA its
// target_clones picks (AVX-512, AVX2, scalar), so an f32-vs-f32 tolerance
// would be tuned to one machine. The f32 GPU kernel's error against exact
// GELU, with u32 = 2^-24 and CUDA's tanhf within 2 ulp (CUDA Math API,
// "Single precision"): u = k(x + c·x³) carries ~4 roundings, so
// |Δtanh u| ≤ 4u32·|tanh u| + 4u32·|u|·sech²u ≤ 6u32; then
//   forward  ½x(1 + tanh u):  |Δ| ≤ ½|x|·(6u32 + u32) + 3u32·|y|  < 4u32·(|x| + |y|)
//   backward: the term ½x·sech²u·k(1 + 3c·x²) loses sech²u = 1 - tanh²u to
//   cancellation, |Δsech²| ≤ 2|Δtanh| ≤ 12u32, times ½|x|·k(1 + 3c·x²) ≤ 0.4|x|(1 + 0.14x²);
//   with ½(1 + tanh u)'s 4u32 and the products' roundings,
//   |Δ| < u32·|dy|·(8 + 5|x|(1 + 0.14x²)) + 3u32·|dx|.
// The checks allow 4× those bounds; a wrong formula (a dropped 3c·x² term) is
// off by ~1e-2, far outside.
template <typename T>
void check_gelu_against_f64(const std::vector<T>& x, const std::vector<T>& dy,
                            const std::vector<T>& got_y, const std::vector<T>& got_dx) {
  const size_t n = x.size();
  std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end()), y(n), dx(n);
  ms::cpu::gelu_forward(y.data(), xd.data(), int64_t(n));
  ms::cpu::gelu_backward(dx.data(), dyd.data(), xd.data(), int64_t(n));
  const bool f32 = sizeof(T) == 4;
  const double u = f32 ? std::ldexp(1.0, -24) : 0;
  std::vector<double> lim_y(n), lim_dx(n);
  for (size_t i = 0; i < n; ++i) {
    const double ax = std::fabs(xd[i]);
    lim_y[i] = f32 ? 4 * 4 * u * (ax + std::fabs(y[i])) : 1e-12 * (1 + std::fabs(y[i]));
    lim_dx[i] =
        f32 ? 4 * u *
                  (std::fabs(dyd[i]) * (8 + 5 * ax * (1 + 0.14 * ax * ax)) + 3 * std::fabs(dx[i]))
            : 1e-12 * (1 + std::fabs(dx[i]));
  }
  auto check = [](const std::vector<T>& got, const std::vector<double>& want,
                  const std::vector<double>& lim, const char* what) {
    size_t bad = got.size();
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double r = std::fabs(double(got[i]) - want[i]) / lim[i];
      if (!(r <= 1) && bad == got.size()) bad = i;
      if (r > worst || std::isnan(r)) worst = r;
    }
    INFO(what << ": n = " << got.size() << ", worst error / bound = " << worst
              << (bad < got.size() ? ", first over the bound at " + std::to_string(bad) : ""));
    CHECK(bad == got.size());
  };
  check(got_y, y, lim_y, "gelu forward vs f64");
  check(got_dx, dx, lim_dx, "gelu backward vs f64");
}

TEMPLATE_TEST_CASE("cuda gelu forward/backward match an f64 reference", "[cuda][gelu]", float,
                   double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  for (int64_t n : {1, 31, 1000, 100003}) {
    auto x = random_vec<T>(n, 1, -4, 4), dy = random_vec<T>(n, 2);
    DeviceBuf<T> dX(x), dDY(dy), dY(n), dDX(n);
    ms::cuda::gelu_forward(dY.get(), dX.get(), n, main_stream());
    ms::cuda::gelu_backward(dDX.get(), dDY.get(), dX.get(), n, main_stream());
    check_gelu_against_f64(x, dy, dY.download(), dDX.download());
  }
}

TEMPLATE_TEST_CASE("cuda embedding forward/backward match the CPU twin, repeated ids",
                   "[cuda][embedding]", float, double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  for (auto [N, C] : kRowShapes) {
    const int32_t V = 5;  // few ids: most rows collide in the backward scatter
    auto w = random_vec<T>(V * C, 3), dout = random_vec<T>(N * C, 4);
    auto idx = random_ids(N, V, 5);
    auto dw0 = random_vec<T>(V * C, 6);  // backward ACCUMULATES into dweight
    std::vector<T> out(N * C), dw = dw0;
    ms::cpu::embedding_forward(out.data(), w.data(), idx.data(), N, C);
    ms::cpu::embedding_backward(dw.data(), dout.data(), idx.data(), N, C);
    DeviceBuf<T> dW(w), dOut(N * C), dDout(dout), dDW(dw0);
    DeviceBuf<int32_t> dIdx(idx);
    ms::cuda::embedding_forward(dOut.get(), dW.get(), dIdx.get(), N, C, main_stream());
    ms::cuda::embedding_backward(dDW.get(), dDout.get(), dIdx.get(), N, C, main_stream());
    require_close(dOut.download(), out, 0, 0, "embedding forward (a gather: exact)");
    require_close(dDW.download(), dw, tol<T>(1e-6), tol<T>(1e-6), "embedding backward");
  }
}

TEMPLATE_TEST_CASE("cuda softmax and log-softmax forward/backward match the CPU twin",
                   "[cuda][softmax]", float, double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  for (auto [N, C] : kRowShapes) {
    auto x = random_vec<T>(N * C, 7, -8, 8), dy = random_vec<T>(N * C, 8);
    std::vector<T> y(N * C), dx(N * C), ly(N * C), ldx(N * C);
    ms::cpu::softmax_forward(y.data(), x.data(), N, C);
    ms::cpu::softmax_backward(dx.data(), dy.data(), y.data(), N, C);
    ms::cpu::log_softmax_forward(ly.data(), x.data(), N, C);
    ms::cpu::log_softmax_backward(ldx.data(), dy.data(), ly.data(), N, C);
    DeviceBuf<T> dX(x), dDY(dy), dY(N * C), dDX(N * C), dLY(N * C), dLDX(N * C);
    ms::cuda::softmax_forward(dY.get(), dX.get(), N, C, main_stream());
    ms::cuda::log_softmax_forward(dLY.get(), dX.get(), N, C, main_stream());
    // Backward from the CPU's forward output, so only the backward is under test.
    DeviceBuf<T> cpuY(y), cpuLY(ly);
    ms::cuda::softmax_backward(dDX.get(), dDY.get(), cpuY.get(), N, C, main_stream());
    ms::cuda::log_softmax_backward(dLDX.get(), dDY.get(), cpuLY.get(), N, C, main_stream());
    require_close(dY.download(), y, tol<T>(1e-5), tol<T>(1e-7), "softmax forward");
    require_close(dDX.download(), dx, tol<T>(1e-5), tol<T>(1e-6), "softmax backward");
    require_close(dLY.download(), ly, tol<T>(1e-5), tol<T>(1e-5), "log_softmax forward");
    require_close(dLDX.download(), ldx, tol<T>(1e-5), tol<T>(1e-5), "log_softmax backward");
  }
}

TEST_CASE("cuda softmax of a fully masked (-inf) row is zeros, as the CPU's", "[cuda][softmax]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  const int64_t N = 2, C = 300;
  std::vector<float> x(N * C, -INFINITY), y(N * C, 1.0f);
  x[C + 5] = 2.0f;  // row 1 has one live entry
  ms::cpu::softmax_forward(y.data(), x.data(), N, C);
  DeviceBuf<float> dX(x), dY(N * C);
  ms::cuda::softmax_forward(dY.get(), dX.get(), N, C, main_stream());
  require_close(dY.download(), y, 0, 0, "softmax of -inf rows");
}

TEMPLATE_TEST_CASE("cuda layernorm forward/backward match the CPU twin", "[cuda][layernorm]", float,
                   double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {3, 7}, {17, 33}, {9, 768}, {300, 64}, {600, 5}};  // 300, 600 rows: > 1 row chunk
  for (auto [N, C] : shapes) {
    auto x = random_vec<T>(N * C, 9, -3, 3), w = random_vec<T>(C, 10), b = random_vec<T>(C, 11);
    auto dy = random_vec<T>(N * C, 12);
    auto dw0 = random_vec<T>(C, 13), db0 = random_vec<T>(C, 14);  // accumulated into
    std::vector<T> y(N * C), mean(N), rstd(N), dx(N * C), dw = dw0, db = db0;
    ms::cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N,
                               C, 1e-5);
    ms::cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                                mean.data(), rstd.data(), N, C);
    DeviceBuf<T> dX(x), dW(w), dB(b), dY(N * C), dMean(N), dRstd(N);
    ms::cuda::layernorm_forward(dY.get(), dMean.get(), dRstd.get(), dX.get(), dW.get(), dB.get(), N,
                                C, 1e-5, main_stream());
    require_close(dY.download(), y, tol<T>(1e-5), tol<T>(1e-5), "layernorm forward out");
    require_close(dMean.download(), mean, tol<T>(1e-5), tol<T>(1e-6), "layernorm forward mean");
    require_close(dRstd.download(), rstd, tol<T>(1e-5), tol<T>(1e-6), "layernorm forward rstd");
    DeviceBuf<T> dDY(dy), dDX(N * C), dDW(dw0), dDB(db0), cMean(mean), cRstd(rstd);
    ms::cuda::layernorm_backward(dDX.get(), dDW.get(), dDB.get(), dDY.get(), dX.get(), dW.get(),
                                 cMean.get(), cRstd.get(), N, C, main_stream());
    // dweight/dbias sum N terms in another order (per-chunk partials + atomics).
    require_close(dDX.download(), dx, tol<T>(1e-4), tol<T>(1e-5), "layernorm backward dinp");
    require_close(dDW.download(), dw, tol<T>(1e-4), tol<T>(1e-4), "layernorm backward dweight");
    require_close(dDB.download(), db, tol<T>(1e-4), tol<T>(1e-4), "layernorm backward dbias");
  }
}

TEMPLATE_TEST_CASE("cuda cross-entropy and the fused classifier match the CPU twin",
                   "[cuda][cross_entropy]", float, double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 7}, {17, 513}, {4, 50257}};
  for (auto [N, V] : shapes) {
    auto logits = random_vec<T>(N * V, 15, -5, 5);
    auto tgt = random_ids(N, int32_t(V), 16);
    const double dloss = 0.75;
    std::vector<T> lse(N), dlogits(N * V);
    const double loss = ms::cpu::cross_entropy_forward(lse.data(), logits.data(), tgt.data(), N, V);
    ms::cpu::cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), tgt.data(), dloss, N,
                                    V);
    DeviceBuf<T> dLogits(logits), dLse(N), dD(N * V);
    DeviceBuf<int32_t> dTgt(tgt);
    const double gloss =
        ms::cuda::cross_entropy_forward(dLse.get(), dLogits.get(), dTgt.get(), N, V, main_stream());
    CHECK(std::fabs(gloss - loss) <= tol<T>(1e-5) * (1 + std::fabs(loss)));
    require_close(dLse.download(), lse, tol<T>(1e-5), tol<T>(1e-6), "cross_entropy lse");
    ms::cuda::cross_entropy_backward(dD.get(), dLogits.get(), dLse.get(), dTgt.get(), dloss, N, V,
                                     main_stream());
    require_close(dD.download(), dlogits, tol<T>(1e-4), tol<T>(1e-8), "cross_entropy dlogits");

    // Fused: per-row losses (their mean is the loss) and dlogits over the logits.
    DeviceBuf<T> fused(logits), losses(N);
    ms::cuda::fused_classifier(fused.get(), losses.get(), dTgt.get(), dloss, N, V, main_stream());
    auto l = losses.download();
    double sum = 0;
    for (T x : l) sum += double(x);
    CHECK(std::fabs(sum / double(N) - loss) <= tol<T>(1e-5) * (1 + std::fabs(loss)));
    require_close(fused.download(), dlogits, tol<T>(1e-4), tol<T>(1e-8),
                  "fused_classifier dlogits");
  }
}

TEST_CASE("cuda adamw and sgd updates match the CPU twin", "[cuda][adamw]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  for (int64_t n : {1, 1000, 65537}) {
    auto p = random_vec<float>(n, 17), g = random_vec<float>(n, 18);
    auto m = random_vec<float>(n, 19, -0.1, 0.1), v = random_vec<float>(n, 20, 0, 0.01);
    // Step 3 of lr 1e-3, wd 0.1, betas (0.9, 0.999), as optim/ computes them.
    const float lr = 1e-3f, wd = 0.1f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float step_size = lr / (1 - std::pow(b1, 3.0f)), bc2 = std::sqrt(1 - std::pow(b2, 3.0f));
    DeviceBuf<float> dP(p), dM(m), dV(v), dG(g);
    ms::cpu::adamw_update(p.data(), m.data(), v.data(), g.data(), n, step_size, 1 - lr * wd, b1, b2,
                          1 - b1, 1 - b2, bc2, eps);
    ms::cuda::adamw_update(dP.get(), dM.get(), dV.get(), dG.get(), n, step_size, 1 - lr * wd, b1,
                           b2, 1 - b1, 1 - b2, bc2, eps, main_stream());
    // Same operations in the same order; only FMA contraction may differ.
    require_close(dP.download(), p, 1e-6, 1e-7, "adamw param");
    require_close(dM.download(), m, 1e-6, 1e-8, "adamw m");
    require_close(dV.download(), v, 1e-6, 1e-10, "adamw v");

    for (bool with_momentum : {false, true}) {
      auto q = random_vec<float>(n, 21), buf = random_vec<float>(n, 22);
      DeviceBuf<float> dQ(q), dBuf(buf);
      for (bool first : {true, false}) {
        ms::cpu::sgd_update(q.data(), with_momentum ? buf.data() : nullptr, g.data(), n, 0.1f, 0.9f,
                            0.01f, first);
        ms::cuda::sgd_update(dQ.get(), with_momentum ? dBuf.get() : nullptr, dG.get(), n, 0.1f,
                             0.9f, 0.01f, first, main_stream());
      }
      require_close(dQ.download(), q, 1e-6, 1e-7, "sgd param");
      if (with_momentum) require_close(dBuf.download(), buf, 1e-6, 1e-7, "sgd momentum");
    }
  }
}

TEMPLATE_TEST_CASE("cuda reduce_sum / reduce_max match the CPU twin on every axis shape",
                   "[cuda][reductions]", float, double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  struct S {
    int64_t outer, R, inner;
  };
  // inner = 1 (row sums), outer = 1 (bias gradients), both, R = 1, and a
  // column count that is not a multiple of the 32-column block.
  for (S s : {S{1, 1, 1}, S{5, 1, 3}, S{7, 1000, 1}, S{1, 8192, 33}, S{3, 77, 768}, S{2, 5, 1}}) {
    const int64_t n = s.outer * s.R * s.inner, m = s.outer * s.inner;
    auto x = random_vec<T>(n, 23);
    if (n > 4) x[3] = x[1];  // a tie: argmax must report the first occurrence
    std::vector<T> sum(m), mx(m);
    std::vector<int32_t> arg(m);
    ms::cpu::reduce_sum(x.data(), sum.data(), s.outer, s.R, s.inner);
    ms::cpu::reduce_max(x.data(), mx.data(), arg.data(), s.outer, s.R, s.inner);
    DeviceBuf<T> dX(x), dSum(m), dMax(m);
    DeviceBuf<int32_t> dArg(m);
    ms::cuda::reduce_sum(dX.get(), dSum.get(), s.outer, s.R, s.inner, main_stream());
    ms::cuda::reduce_max(dX.get(), dMax.get(), dArg.get(), s.outer, s.R, s.inner, main_stream());
    // Both accumulate in double: only the order differs.
    require_close(dSum.download(), sum, 1e-6, 1e-6, "reduce_sum");
    require_close(dMax.download(), mx, 0, 0, "reduce_max (exact)");
    require_close(dArg.download(), arg, 0, 0, "reduce_max argmax (exact)");
  }
}

TEST_CASE("cuda reduce_max propagates the first NaN like the CPU", "[cuda][reductions]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  std::vector<float> x = {1, 5, NAN, 7, NAN, 2};  // (1, 6, 1)
  float mx = 0;
  int32_t arg = -1;
  ms::cpu::reduce_max(x.data(), &mx, &arg, 1, 6, 1);
  DeviceBuf<float> dX(x), dMax(1);
  DeviceBuf<int32_t> dArg(1);
  ms::cuda::reduce_max(dX.get(), dMax.get(), dArg.get(), 1, 6, 1, main_stream());
  CHECK(std::isnan(dMax.download()[0]));
  CHECK(dArg.download()[0] == arg);
}

TEST_CASE("cuda sum_squares (the global gradient norm) matches the CPU twin",
          "[cuda][reductions]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  for (int64_t n : {1, 255, 1 << 20, 124439808 / 64}) {
    auto x = random_vec<float>(n, 24);
    DeviceBuf<float> dX(x);
    const double want = ms::cpu::sum_squares(x.data(), n);
    const double got = ms::cuda::sum_squares(dX.get(), n, main_stream());
    CHECK(std::fabs(got - want) <= 1e-12 * want);  // double sums of f32 squares: order only
  }
}

TEST_CASE("cuda elementwise binary/unary over strided and broadcast inputs",
          "[cuda][elementwise]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  // out (3, 4, 5); a is a transposed (5, 4, 3) buffer; b broadcasts a (4, 1) over dims 0 and 2.
  const ms::Shape shape = {3, 4, 5};
  const int64_t n = 60;
  auto a = random_vec<float>(n, 25, 0.5, 2), b = random_vec<float>(4, 26, 0.5, 2);
  const ms::Shape sa = {1, 3, 12}, sb = {0, 1, 0};
  const ms::cuda::Strided g = ms::cuda::make_strided(shape, sa, sb);
  CHECK_FALSE(g.contiguous);
  DeviceBuf<float> dA(a), dB(b), dOut(n);
  for (auto op : {ms::cpu::BinaryOp::Add, ms::cpu::BinaryOp::Sub, ms::cpu::BinaryOp::Mul,
                  ms::cpu::BinaryOp::Div}) {
    std::vector<float> want(n);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j)
        for (int64_t k = 0; k < 5; ++k) {
          const float x = a[i * sa[0] + j * sa[1] + k * sa[2]], y = b[j];
          const float r = op == ms::cpu::BinaryOp::Add   ? x + y
                          : op == ms::cpu::BinaryOp::Sub ? x - y
                          : op == ms::cpu::BinaryOp::Mul ? x * y
                                                         : x / y;
          want[(i * 4 + j) * 5 + k] = r;
        }
    ms::cuda::binary_strided(op, dA.get(), dB.get(), dOut.get(), g, main_stream());
    require_close(dOut.download(), want, 0, 0, "binary (one IEEE op: exact)");
  }
  for (auto op :
       {ms::cpu::UnaryOp::Neg, ms::cpu::UnaryOp::Exp, ms::cpu::UnaryOp::Log, ms::cpu::UnaryOp::Tanh,
        ms::cpu::UnaryOp::Sqrt, ms::cpu::UnaryOp::Relu, ms::cpu::UnaryOp::AddScalar,
        ms::cpu::UnaryOp::MulScalar, ms::cpu::UnaryOp::PowScalar}) {
    const float s = 1.5f;
    std::vector<float> want(n);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j)
        for (int64_t k = 0; k < 5; ++k) {
          const float x = a[i * sa[0] + j * sa[1] + k * sa[2]];
          float r = 0;
          switch (op) {
            case ms::cpu::UnaryOp::Neg:
              r = -x;
              break;
            case ms::cpu::UnaryOp::Exp:
              r = std::exp(x);
              break;
            case ms::cpu::UnaryOp::Log:
              r = std::log(x);
              break;
            case ms::cpu::UnaryOp::Tanh:
              r = std::tanh(x);
              break;
            case ms::cpu::UnaryOp::Sqrt:
              r = std::sqrt(x);
              break;
            case ms::cpu::UnaryOp::Relu:
              r = x > 0 ? x : 0;
              break;
            case ms::cpu::UnaryOp::AddScalar:
              r = x + s;
              break;
            case ms::cpu::UnaryOp::MulScalar:
              r = x * s;
              break;
            case ms::cpu::UnaryOp::PowScalar:
              r = std::pow(x, s);
              break;
          }
          want[(i * 4 + j) * 5 + k] = r;
        }
    ms::cuda::unary_strided(op, dA.get(), dOut.get(), ms::cuda::make_strided(shape, sa, sa), s,
                            main_stream());
    // CUDA's documented worst cases: expf, tanhf 2 ulp, powf 4 ulp (≤ 5e-7 relative).
    require_close(dOut.download(), want, 6e-7, 1e-7, "unary (CUDA math vs libm)");
  }
}

TEST_CASE("cuda convert/fill/axpy/scale round into bf16 and f16 as the CPU does",
          "[cuda][elementwise]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  const int64_t n = 1001;
  auto x = random_vec<float>(n, 27, -100, 100), y = random_vec<float>(n, 28, -100, 100);
  for (ms::DType t : {ms::DType::BF16, ms::DType::F16}) {
    auto to16 = [t](float v) {
      return t == ms::DType::BF16 ? ms::f32_to_bf16(v) : ms::f32_to_f16(v);
    };
    auto from16 = [t](uint16_t v) {
      return t == ms::DType::BF16 ? ms::bf16_to_f32(v) : ms::f16_to_f32(v);
    };
    std::vector<uint16_t> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = to16(x[i]);
    DeviceBuf<float> dX(x), dY(y), dBack(n);
    DeviceBuf<uint16_t> d16(n);
    ms::cuda::convert(dX.get(), ms::DType::F32, d16.get(), t, n, main_stream());
    require_close(d16.download(), want, 0, 0, "convert f32 -> 16-bit (bit-exact RNE)");
    ms::cuda::convert(d16.get(), t, dBack.get(), ms::DType::F32, n, main_stream());
    std::vector<float> back(n);
    for (int64_t i = 0; i < n; ++i) back[i] = from16(want[i]);
    require_close(dBack.download(), back, 0, 0, "convert 16-bit -> f32 (exact)");

    // axpy into the 16-bit tensor: f32 sum, one rounding (the CPU twin's rule).
    std::vector<uint16_t> acc(n);
    for (int64_t i = 0; i < n; ++i) acc[i] = to16(from16(want[i]) + 0.5f * y[i]);
    ms::cuda::axpy_n(d16.get(), t, dY.get(), ms::DType::F32, n, 0.5, main_stream());
    require_close(d16.download(), acc, 0, 0, "axpy into 16-bit");
    std::vector<uint16_t> scaled(n);
    for (int64_t i = 0; i < n; ++i) scaled[i] = to16(from16(acc[i]) * 0.25f);
    ms::cuda::scale_n(d16.get(), t, n, 0.25, main_stream());
    require_close(d16.download(), scaled, 0, 0, "scale_rounded");
    ms::cuda::fill_n(d16.get(), t, n, 3.14159, main_stream());
    require_close(d16.download(), std::vector<uint16_t>(n, to16(3.14159f)), 0, 0, "fill");
  }
}

// f64 storage keeps f64 arithmetic: scale_rounded and a mixed axpy with an
// f64 side once went through f32, a relative error of ~6e-8 where f64 owes
// 1e-16. The tolerance allows one f64 rounding per operation (plus an FMA's).
TEST_CASE("cuda scale_rounded and mixed axpy compute in f64 when a side is f64",
          "[cuda][elementwise]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  const int64_t n = 1001;
  auto x = random_vec<double>(n, 29, -100, 100);
  auto yf = random_vec<float>(n, 30, -100, 100);
  const double s = 1.0 / 3.0, alpha = 0.1;  // neither exact in f32
  std::vector<double> scaled(n), acc(n);
  for (int64_t i = 0; i < n; ++i) scaled[i] = x[i] * s;
  for (int64_t i = 0; i < n; ++i) acc[i] = scaled[i] + alpha * double(yf[i]);
  DeviceBuf<double> dX(x);
  DeviceBuf<float> dY(yf);
  ms::cuda::scale_n(dX.get(), ms::DType::F64, n, s, main_stream());
  require_close(dX.download(), scaled, 1e-15, 0, "scale_rounded f64");
  ms::cuda::axpy_n(dX.get(), ms::DType::F64, dY.get(), ms::DType::F32, n, alpha, main_stream());
  require_close(dX.download(), acc, 1e-14, 1e-13, "axpy f64 += f32");
  // The other way: an f32 destination with an f64 source rounds once, from f64.
  std::vector<float> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = float(double(yf[i]) + alpha * acc[i]);
  ms::cuda::axpy_n(dY.get(), ms::DType::F32, dX.get(), ms::DType::F64, n, alpha, main_stream());
  require_close(dY.download(), want, 1e-7, 0, "axpy f32 += f64");
}

// Host-side checks: these throw before any CUDA call, so they run (and must
// pass) on a machine without a GPU too.
TEST_CASE("cuda elementwise geometry: contiguity, broadcast and the dim limit (host only)",
          "[cuda][host]") {
  const ms::Shape shape = {2, 3, 4};
  CHECK(ms::cuda::make_strided(shape, {12, 4, 1}, {12, 4, 1}).contiguous);
  CHECK_FALSE(ms::cuda::make_strided(shape, {12, 4, 1}, {0, 1, 0}).contiguous);
  CHECK_FALSE(ms::cuda::make_strided(shape, {1, 2, 6}, {12, 4, 1}).contiguous);
  // A size-1 dim's stride is irrelevant: still the flat path.
  CHECK(ms::cuda::make_strided({2, 1, 4}, {4, 99, 1}, {4, 4, 1}).contiguous);
  const ms::Shape nine(9, 1);
  CHECK_THROWS_WITH(ms::cuda::make_strided(nine, nine, nine), Catch::Contains("at most 8"));
}

TEST_CASE("cuda kernels refuse bad shapes with an ms::Error before launching (host only)",
          "[cuda][host]") {
  float* none = nullptr;  // never dereferenced: the checks come first
  CHECK_THROWS_WITH(ms::cuda::attention_forward(none, none, none, 1, 4, 10, 3, kNeverLaunched),
                    Catch::Contains("C = 10 is not a multiple of NH = 3"));
  CHECK_THROWS_WITH(
      ms::cuda::attention_backward(none, none, none, none, none, 1, 4, 2048, 1, kNeverLaunched),
      Catch::Contains("head size 2048 exceeds 1024"));
  int32_t* arg = nullptr;
  CHECK_THROWS_WITH(ms::cuda::reduce_max(none, none, arg, 2, 0, 3, kNeverLaunched),
                    Catch::Contains("R = 0"));
  CHECK_THROWS_WITH(ms::cuda::reduce_sum(none, none, 70000, 5, 2, kNeverLaunched),
                    Catch::Contains("outer = 70000"));
}
