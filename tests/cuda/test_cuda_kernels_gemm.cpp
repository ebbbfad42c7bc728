// [cuda] GEMM (hand-written tiled kernel and cuBLAS/cuBLASLt in FP32, TF32 and
// BF16 math) and causal attention against their tensor/cpu/ twins, on odd
// shapes: M, N, K of 1 and not multiples of the 128×128×16 tile, all four
// transpose combinations, leading dims wider than the matrix, T not a
// multiple of anything. Skipped, visibly, without a CUDA device.
//
// GEMM tolerance is an error bound, not a fixed epsilon: |C - C_cpu| ≤
// u·Σ_k |A_ik|·|B_kj| (+ tiny), with u the unit roundoff of the inputs' format
// as the tensor cores see them: f32 ~1e-5 after K-term summation, TF32 2^-10
// (10-bit mantissa), BF16 2^-7 (7-bit mantissa: each input rounded, so the
// product errs by ~2·2^-8 of |a||b|).
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "tensor/cpu/attention.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cuda/kernels.h"
#include "tensor/dtype.h"
#include "tests/cuda/test_cuda_kernels_util.h"

using namespace ms::cudatest;
using ms::cuda::GemmBackend;
using ms::cuda::GemmConfig;
using ms::cuda::GemmMath;

namespace {

struct Case {
  int64_t M, N, K;
};
// M, N or K = 1 included: gemm_f32_bias cannot use cuBLASLt's epilogue there.
const std::vector<Case> kShapes = {{1, 1, 1},      {1, 7, 3},       {5, 1, 9},
                                   {6, 5, 1},      {7, 13, 5},      {128, 128, 16},
                                   {129, 257, 33}, {300, 50, 1000}, {64, 768, 768}};

// Σ_k |op(A)_ik|·|op(B)_kj| for every (i, j): the scale a rounding error can reach.
std::vector<double> abs_product(bool ta, bool tb, const Case& c, const std::vector<float>& A,
                                int64_t lda, const std::vector<float>& B, int64_t ldb) {
  std::vector<double> s(c.M * c.N, 0.0);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t k = 0; k < c.K; ++k) {
      const double a = std::fabs(ta ? A[k * lda + i] : A[i * lda + k]);
      for (int64_t j = 0; j < c.N; ++j)
        s[i * c.N + j] += a * std::fabs(tb ? B[j * ldb + k] : B[k * ldb + j]);
    }
  return s;
}

// got (M, ldc) vs want: |err| ≤ u·bound + atol, per element.
void require_within(const std::vector<float>& got, const std::vector<float>& want,
                    const std::vector<double>& bound, int64_t M, int64_t N, int64_t ldc, double u,
                    const std::string& what) {
  int64_t bad = -1;
  double worst = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const double err = std::fabs(double(got[i * ldc + j]) - double(want[i * ldc + j]));
      const double lim = u * bound[i * N + j] + 1e-6;
      if (err / lim > worst) worst = err / lim;
      if (!(err <= lim) && bad < 0) bad = i * N + j;
    }
  INFO(what << ": worst |err| / bound = " << worst << (bad >= 0 ? " (out of bound)" : ""));
  CHECK(bad < 0);
}

double unit_roundoff(GemmBackend backend, GemmMath math) {
  if (backend == GemmBackend::Tiled || math == GemmMath::FP32) return 2e-6;
  return math == GemmMath::TF32 ? std::ldexp(1.0, -10) * 2 : std::ldexp(1.0, -7) * 2;
}

}  // namespace

TEST_CASE("cuda gemm_f32: tiled and cuBLAS (fp32/tf32/bf16) match the CPU twin", "[cuda][gemm]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  const std::vector<GemmConfig> configs = {{GemmBackend::Tiled, GemmMath::FP32},
                                           {GemmBackend::Cublas, GemmMath::FP32},
                                           {GemmBackend::Cublas, GemmMath::TF32},
                                           {GemmBackend::Cublas, GemmMath::BF16}};
  for (const Case& c : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        // Stored shapes with leading dims 3 wider than needed (a view of a bigger buffer).
        const int64_t lda = (ta ? c.M : c.K) + 3, ldb = (tb ? c.K : c.N) + 3, ldc = c.N + 3;
        const int64_t rows_a = ta ? c.K : c.M, rows_b = tb ? c.N : c.K;
        auto A = random_vec<float>(rows_a * lda, 30), B = random_vec<float>(rows_b * ldb, 31);
        auto C0 = random_vec<float>(c.M * ldc, 32);
        const float alpha = 0.5f, beta = -1.25f;
        std::vector<float> want = C0;
        ms::cpu::gemm_f32(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta,
                          want.data(), ldc);
        auto bound = abs_product(ta, tb, c, A, lda, B, ldb);
        for (double& b : bound) b = b * alpha + 1.25;  // + |beta·C0| ≤ 1.25
        DeviceBuf<float> dA(A), dB(B);
        for (const GemmConfig& cfg : configs) {
          DeviceBuf<float> dC(C0);
          ms::cuda::gemm_f32(ta, tb, c.M, c.N, c.K, alpha, dA.get(), lda, dB.get(), ldb, beta,
                             dC.get(), ldc, cfg, main_stream());
          auto got = dC.download();
          std::ostringstream what;
          what << "gemm_f32 " << ms::cuda::gemm_backend_name(cfg.backend) << "/"
               << ms::cuda::gemm_math_name(cfg.math) << " M,N,K = " << c.M << "," << c.N << ","
               << c.K << " ta=" << ta << " tb=" << tb;
          require_within(got, want, bound, c.M, c.N, ldc, unit_roundoff(cfg.backend, cfg.math),
                         what.str());
          // The padding columns of C (j ≥ N) must be untouched.
          bool pad_ok = true;
          for (int64_t i = 0; i < c.M; ++i)
            for (int64_t j = c.N; j < ldc; ++j) pad_ok &= got[i * ldc + j] == C0[i * ldc + j];
          INFO(what.str());
          CHECK(pad_ok);
        }
      }
}

TEST_CASE("cuda gemm with beta = 0 ignores NaN in C (BLAS semantics)", "[cuda][gemm]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  const Case c{33, 17, 9};
  auto A = random_vec<float>(c.M * c.K, 33), B = random_vec<float>(c.K * c.N, 34);
  std::vector<float> want(c.M * c.N);
  ms::cpu::gemm_f32(false, false, c.M, c.N, c.K, 1.0f, A.data(), c.K, B.data(), c.N, 0.0f,
                    want.data(), c.N);
  for (GemmBackend be : {GemmBackend::Tiled, GemmBackend::Cublas}) {
    DeviceBuf<float> dA(A), dB(B), dC(std::vector<float>(c.M * c.N, NAN));
    ms::cuda::gemm_f32(false, false, c.M, c.N, c.K, 1.0f, dA.get(), c.K, dB.get(), c.N, 0.0f,
                       dC.get(), c.N, GemmConfig{be, GemmMath::FP32}, main_stream());
    require_close(dC.download(), want, 1e-5, 1e-5, ms::cuda::gemm_backend_name(be));
  }
}

TEST_CASE("cuda gemm_f32_bias (cuBLASLt epilogue and tiled) matches the CPU twin", "[cuda][gemm]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  for (const Case& c : kShapes)
    for (bool tb : {false, true}) {  // Linear forward: x (M, K) · W, W stored (K, N) or (N, K)
      const int64_t ldb = tb ? c.K : c.N;
      auto A = random_vec<float>(c.M * c.K, 35), B = random_vec<float>(c.K * c.N, 36);
      auto bias = random_vec<float>(c.N, 37);
      std::vector<float> want(c.M * c.N);
      ms::cpu::gemm_f32_bias(false, tb, c.M, c.N, c.K, 1.0f, A.data(), c.K, B.data(), ldb,
                             bias.data(), want.data(), c.N);
      auto bound = abs_product(false, tb, c, A, c.K, B, ldb);
      for (double& b : bound) b += 1.0;  // |bias| ≤ 1
      DeviceBuf<float> dA(A), dB(B), dBias(bias);
      for (GemmConfig cfg : {GemmConfig{GemmBackend::Tiled, GemmMath::FP32},
                             GemmConfig{GemmBackend::Cublas, GemmMath::FP32},
                             GemmConfig{GemmBackend::Cublas, GemmMath::TF32},
                             GemmConfig{GemmBackend::Cublas, GemmMath::BF16}}) {
        DeviceBuf<float> dC(c.M * c.N);
        ms::cuda::gemm_f32_bias(false, tb, c.M, c.N, c.K, 1.0f, dA.get(), c.K, dB.get(), ldb,
                                dBias.get(), dC.get(), c.N, cfg, main_stream());
        std::ostringstream what;
        what << "gemm_f32_bias " << ms::cuda::gemm_backend_name(cfg.backend) << "/"
             << ms::cuda::gemm_math_name(cfg.math) << " M,N,K = " << c.M << "," << c.N << "," << c.K
             << " tb=" << tb;
        require_within(dC.download(), want, bound, c.M, c.N, c.N,
                       unit_roundoff(cfg.backend, cfg.math), what.str());
      }
    }
}

TEST_CASE("cuda gemm_f64 (tiled and cuBLAS) matches the CPU twin to 1e-12", "[cuda][gemm]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  for (const Case& c : {Case{1, 1, 1}, Case{7, 13, 5}, Case{129, 257, 33}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t lda = ta ? c.M : c.K, ldb = tb ? c.K : c.N;
        auto A = random_vec<double>(c.M * c.K, 38), B = random_vec<double>(c.K * c.N, 39);
        auto C0 = random_vec<double>(c.M * c.N, 40);
        std::vector<double> want = C0;
        ms::cpu::gemm_f64(ta, tb, c.M, c.N, c.K, 2.0, A.data(), lda, B.data(), ldb, 0.5,
                          want.data(), c.N);
        DeviceBuf<double> dA(A), dB(B);
        for (GemmBackend be : {GemmBackend::Tiled, GemmBackend::Cublas}) {
          DeviceBuf<double> dC(C0);
          ms::cuda::gemm_f64(ta, tb, c.M, c.N, c.K, 2.0, dA.get(), lda, dB.get(), ldb, 0.5,
                             dC.get(), c.N, be, main_stream());
          require_close(dC.download(), want, 1e-12, 1e-12, ms::cuda::gemm_backend_name(be));
        }
      }
}

TEST_CASE("cuda gemm_bf16 (bf16 storage, f32 accumulation) matches an f32 GEMM of the same inputs",
          "[cuda][gemm]") {
  MS_REQUIRE_CUDA_OR_SKIP();
  for (const Case& c : {Case{1, 1, 1}, Case{7, 13, 5}, Case{129, 257, 33}, Case{64, 768, 768}}) {
    auto A = random_vec<float>(c.M * c.K, 41), B = random_vec<float>(c.K * c.N, 42);
    std::vector<uint16_t> A16(A.size()), B16(B.size());
    for (size_t i = 0; i < A.size(); ++i) A[i] = ms::bf16_to_f32(A16[i] = ms::f32_to_bf16(A[i]));
    for (size_t i = 0; i < B.size(); ++i) B[i] = ms::bf16_to_f32(B16[i] = ms::f32_to_bf16(B[i]));
    // The reference sees the same bf16 inputs: what remains is f32 accumulation
    // order and the one rounding of C into bf16 (2^-8 relative).
    std::vector<float> want(c.M * c.N);
    ms::cpu::gemm_f32(false, false, c.M, c.N, c.K, 1.0f, A.data(), c.K, B.data(), c.N, 0.0f,
                      want.data(), c.N);
    auto bound = abs_product(false, false, c, A, c.K, B, c.N);
    DeviceBuf<uint16_t> dA(A16), dB(B16), dC(c.M * c.N);
    ms::cuda::gemm_bf16(false, false, c.M, c.N, c.K, 1.0f, dA.get(), c.K, dB.get(), c.N, 0.0f,
                        dC.get(), c.N, main_stream());
    auto got16 = dC.download();
    std::vector<float> got(got16.size());
    for (size_t i = 0; i < got.size(); ++i) got[i] = ms::bf16_to_f32(got16[i]);
    require_within(got, want, bound, c.M, c.N, c.N, std::ldexp(1.0, -8) + 1e-5, "gemm_bf16");
  }
}

TEMPLATE_TEST_CASE("cuda attention forward/backward match the CPU twin on odd T and head sizes",
                   "[cuda][attention]", float, double) {
  MS_REQUIRE_CUDA_OR_SKIP();
  using T = TestType;
  const double rtol = sizeof(T) == 4 ? 1e-4 : 1e-11, atol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  // (B, T, C, NH): T = 1; hs = 4 (< a warp); hs = 40 (not a multiple of 32);
  // GPT-2's hs = 64 with T = 65 (one past a power of two).
  for (auto [B, Tl, C, NH] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>{
           {1, 1, 8, 2}, {2, 7, 16, 4}, {2, 33, 80, 2}, {1, 65, 128, 2}}) {
    const int64_t n_qkv = B * Tl * 3 * C, n_out = B * Tl * C, n_att = B * NH * Tl * Tl;
    auto qkv = random_vec<T>(n_qkv, 43), dout = random_vec<T>(n_out, 44);
    std::vector<T> out(n_out), att(n_att), dqkv(n_qkv), datt(n_att);
    ms::cpu::attention_forward(out.data(), att.data(), qkv.data(), B, Tl, C, NH);
    ms::cpu::attention_backward(dqkv.data(), datt.data(), dout.data(), qkv.data(), att.data(), B,
                                Tl, C, NH);
    DeviceBuf<T> dQKV(qkv), dOut(n_out), dAtt(std::vector<T>(n_att, T(NAN)));  // NaN: all written?
    ms::cuda::attention_forward(dOut.get(), dAtt.get(), dQKV.get(), B, Tl, C, NH, main_stream());
    require_close(dOut.download(), out, rtol, atol, "attention forward out");
    require_close(dAtt.download(), att, rtol, atol, "attention forward att (zeros above diagonal)");
    // Backward from the CPU's att so only the backward is under test.
    DeviceBuf<T> dDout(dout), cAtt(att), dDQKV(std::vector<T>(n_qkv, T(NAN))),
        dDatt(std::vector<T>(n_att, T(NAN)));
    ms::cuda::attention_backward(dDQKV.get(), dDatt.get(), dDout.get(), dQKV.get(), cAtt.get(), B,
                                 Tl, C, NH, main_stream());
    require_close(dDQKV.download(), dqkv, rtol, atol, "attention backward dqkv");
  }
}

TEST_CASE("cuda gemm_f32_bias leaves cuBLASLt's epilogue where M, N or K is 1 (host only)",
          "[cuda][host]") {
  // cuBLASLt's bias epilogue answers CUBLAS_STATUS_INVALID_VALUE for these.
  using ms::cuda::detail::lt_bias_epilogue_ok;
  CHECK(lt_bias_epilogue_ok(8192, 2304, 768));  // GPT-2's qkv
  CHECK(lt_bias_epilogue_ok(2, 2, 2));
  CHECK_FALSE(lt_bias_epilogue_ok(1, 768, 768));  // one token
  CHECK_FALSE(lt_bias_epilogue_ok(64, 1, 768));   // a Linear to one output
  CHECK_FALSE(lt_bias_epilogue_ok(64, 768, 1));   // one input feature
  CHECK_FALSE(lt_bias_epilogue_ok(64, 768, 0));
}

TEST_CASE("cuda gemm names its backends and refuses what cuBLAS's int API would wrap (host only)",
          "[cuda][host]") {
  CHECK(std::string(ms::cuda::gemm_backend_name(GemmBackend::Tiled)) == "tiled");
  CHECK(std::string(ms::cuda::gemm_math_name(GemmMath::BF16)) == "bf16");
  float* none = nullptr;  // never dereferenced: the checks come first
  const int64_t big = int64_t(1) << 31;
  CHECK_THROWS_WITH(
      ms::cuda::gemm_f32(false, false, 2, 2, big, 1.0f, none, big, none, 2, 0.0f, none, 2,
                         GemmConfig{GemmBackend::Cublas, GemmMath::FP32}, kNeverLaunched),
      Catch::Contains("exceeds 2^31 - 1"));
  CHECK_THROWS_WITH(
      ms::cuda::gemm_f32(false, false, 65536 * 128 + 1, 2, 2, 1.0f, none, 2, none, 2, 0.0f, none, 2,
                         GemmConfig{GemmBackend::Tiled, GemmMath::FP32}, kNeverLaunched),
      Catch::Contains("at most 65535"));
}
