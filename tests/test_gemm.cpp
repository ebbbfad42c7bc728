// gemm_f32 / gemm_f64 against a naive triple loop accumulated in double.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <omp.h>

#include "catch_compat.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_packed.h"
#include "tensor/cpu/reductions.h"

namespace {

struct Shape {
  int64_t M, N, K;
};

// Reference C = alpha * op(A) op(B) + beta * C in double; beta == 0 ignores C.
template <typename T>
std::vector<double> reference(bool ta, bool tb, const Shape& s, double alpha,
                              const std::vector<T>& A, int64_t lda, const std::vector<T>& B,
                              int64_t ldb, double beta, const std::vector<T>& C, int64_t ldc) {
  // op(A) as M x K and op(B)ᵀ as N x K, dense, so the dot products below
  // read contiguous memory (keeps the test fast under sanitizers).
  std::vector<double> a(size_t(s.M * s.K)), bt(size_t(s.N * s.K));
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t k = 0; k < s.K; ++k) a[i * s.K + k] = ta ? A[k * lda + i] : A[i * lda + k];
  for (int64_t j = 0; j < s.N; ++j)
    for (int64_t k = 0; k < s.K; ++k) bt[j * s.K + k] = tb ? B[j * ldb + k] : B[k * ldb + j];
  std::vector<double> R(C.begin(), C.end());
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < s.N; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < s.K; ++k) acc += a[i * s.K + k] * bt[j * s.K + k];
      const double c = beta == 0.0 ? 0.0 : beta * double(C[i * ldc + j]);
      R[i * ldc + j] = alpha * acc + c;
    }
  return R;
}

// Runs one case for float or double and checks every element of C, including
// the padding between rows (which must be left untouched).
// with_bias (f32 only, beta must be 0): gemm_f32_bias, C = alpha·op(A)·op(B) + bias per row.
template <typename T>
void check(bool ta, bool tb, Shape s, double alpha, double beta, int64_t pad = 0,
           bool with_bias = false) {
  std::mt19937 rng(unsigned(s.M * 131 + s.N * 17 + s.K + (ta ? 7 : 0) + (tb ? 3 : 0)));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  // Stored shapes: A is (M x K) or (K x M) when transposed; likewise B.
  const int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
  const int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
  const int64_t lda = a_cols + pad, ldb = b_cols + 2 * pad, ldc = s.N + 3 * pad;
  std::vector<T> A(size_t(std::max<int64_t>(1, a_rows * lda))),
      B(size_t(std::max<int64_t>(1, b_rows * ldb))), C(size_t(std::max<int64_t>(1, s.M * ldc)));
  for (T& x : A) x = T(dist(rng));
  for (T& x : B) x = T(dist(rng));
  for (T& x : C) x = beta == 0.0 ? std::numeric_limits<T>::quiet_NaN() : T(dist(rng));
  for (int64_t i = 0; i < s.M; ++i)  // padding between rows of C: a sentinel
    for (int64_t j = s.N; j < ldc; ++j) C[i * ldc + j] = T(12345);

  std::vector<double> R = reference(ta, tb, s, alpha, A, lda, B, ldb, beta, C, ldc);
  std::vector<float> bias(size_t(std::max<int64_t>(1, s.N)));
  for (float& x : bias) x = float(dist(rng));
  if (with_bias)
    for (int64_t i = 0; i < s.M; ++i)
      for (int64_t j = 0; j < s.N; ++j) R[i * ldc + j] += bias[j];
  if constexpr (sizeof(T) == 4) {
    if (with_bias)
      ms::cpu::gemm_f32_bias(ta, tb, s.M, s.N, s.K, float(alpha), A.data(), lda, B.data(), ldb,
                             bias.data(), C.data(), ldc);
    else
      ms::cpu::gemm_f32(ta, tb, s.M, s.N, s.K, float(alpha), A.data(), lda, B.data(), ldb,
                        float(beta), C.data(), ldc);
  } else
    ms::cpu::gemm_f64(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(),
                      ldc);

  // Each product is a sum of K terms of magnitude <= 1: the rounding error of
  // float accumulation grows like eps * K (loosely; blocked sums do better).
  const double eps = std::numeric_limits<T>::epsilon();
  const double tol = 4.0 * eps * double(s.K + 2) * (std::fabs(alpha) + std::fabs(beta) + 1.0);
  int64_t bad = 0;
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const double got = double(C[i * ldc + j]), want = R[i * ldc + j];
      const bool ok = j < s.N ? std::fabs(got - want) <= tol : got == 12345.0;
      if (!ok && bad++ < 3)
        UNSCOPED_INFO("C[" << i << "," << j << "] = " << got << ", want " << want);
    }
  INFO("ta=" << ta << " tb=" << tb << " M=" << s.M << " N=" << s.N << " K=" << s.K
             << " alpha=" << alpha << " beta=" << beta << " pad=" << pad << " bias=" << with_bias);
  CHECK(bad == 0);
}

template <typename T>
void check_all_forms(Shape s, double alpha, double beta, int64_t pad = 0) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) check<T>(ta, tb, s, alpha, beta, pad);
}

const Shape kOdd[] = {{1, 1, 1},    {7, 13, 5},  {17, 33, 65},  {100, 1, 37},
                      {1, 100, 37}, {13, 31, 1}, {12, 32, 256}, {25, 65, 257}};

}  // namespace

TEST_CASE("gemm_f32 matches the naive loop on odd shapes, all transposes", "[gemm]") {
  for (const Shape& s : kOdd) {
    check_all_forms<float>(s, 1.0, 0.0);
    check_all_forms<float>(s, -0.5, 0.75, 3);
  }
}

TEST_CASE("gemm_f32 with empty dimensions", "[gemm]") {
  // M or N == 0: nothing to do. K == 0: C = beta * C (0 when beta == 0, even over NaN).
  for (Shape s : {Shape{0, 5, 3}, Shape{5, 0, 3}, Shape{0, 0, 0}, Shape{4, 6, 0}}) {
    check_all_forms<float>(s, 1.0, 0.0, 1);
    check_all_forms<float>(s, 2.0, 0.5, 1);
  }
}

TEST_CASE("gemm_f32 alpha = 0 scales C by beta", "[gemm]") {
  check_all_forms<float>({9, 10, 11}, 0.0, 0.0, 2);
  check_all_forms<float>({9, 10, 11}, 0.0, -2.0, 2);
}

TEST_CASE("gemm_f32 larger than one cache block, with leading dimensions", "[gemm]") {
  // 300 x 257 x 513 crosses the KC, MR and NR block edges in every dimension.
  check_all_forms<float>({300, 257, 513}, 1.0, 0.0, 5);
  check<float>(false, false, {130, 257, 513}, 0.5, 1.0, 0);
  // Wide enough in N to split into several NC blocks.
  check<float>(false, true, {40, 1600, 70}, 1.0, 0.0, 1);
}

TEST_CASE("gemm_f32_bias adds the bias to every row, on every shape path", "[gemm]") {
  // Odd shapes (edge tiles), several K slabs and threads, gemv (M or N == 1), K == 0.
  for (Shape s : {Shape{7, 13, 5}, Shape{25, 65, 257}, Shape{300, 257, 513}, Shape{1, 100, 37},
                  Shape{100, 1, 37}, Shape{4, 6, 0}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) check<float>(ta, tb, s, 1.0, 0.0, 2, true);
  check<float>(false, false, {9, 10, 11}, 0.0, 0.0, 1, true);  // alpha 0: C = bias
}

TEST_CASE("gemm_f32 matrix-vector shapes (M == 1 or N == 1)", "[gemm]") {
  // Large enough to be split over threads and over the 1024-output blocks,
  // with K not a multiple of the unrolling.
  check_all_forms<float>({1, 2500, 421}, 1.0, 0.0, 3);
  check_all_forms<float>({2100, 1, 203}, -1.0, 0.5, 3);
  check_all_forms<float>({1, 1, 1000}, 1.0, 0.0, 1);
}

TEST_CASE("gemm_f32 every micro-kernel this CPU can run", "[gemm]") {
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    if (!ms::cpu::gemm_f32_force_isa(isa)) continue;
    INFO("isa " << isa);
    CHECK(std::string(ms::cpu::gemm_f32_isa()) == isa);
    check_all_forms<float>({7, 13, 5}, 1.0, 0.0, 1);
    check_all_forms<float>({37, 70, 300}, 1.5, -1.0, 2);
    check<float>(true, false, {130, 129, 260}, 1.0, 0.0, 0);
    // The bias is added in each kernel's store: full tiles of every kernel
    // (24 x 64 is whole 4x16, 6x16 and 12x32 tiles), edge tiles, 2 K slabs.
    for (Shape s : {Shape{24, 64, 20}, Shape{37, 70, 300}})
      for (bool tb : {false, true}) check<float>(false, tb, s, 1.0, 0.0, 1, true);
    check<float>(true, false, {24, 64, 20}, 0.5, 0.0, 0, true);
  }
  REQUIRE(ms::cpu::gemm_f32_force_isa("auto"));
  CHECK(!ms::cpu::gemm_f32_force_isa("no-such-isa"));
}

TEST_CASE("gemm_f64 matches the naive loop", "[gemm]") {
  for (const Shape& s : kOdd) {
    check_all_forms<double>(s, 1.0, 0.0);
    check_all_forms<double>(s, -0.5, 0.75, 3);
  }
  for (Shape s : {Shape{0, 5, 3}, Shape{5, 0, 3}, Shape{4, 6, 0}})
    check_all_forms<double>(s, 1.0, 0.0, 1);
  check_all_forms<double>({9, 10, 11}, 0.0, 0.5, 2);
  check_all_forms<double>({60, 70, 80}, 1.0, 0.0, 2);
}

// ---- the fused column sums against their unfused twin (gemm.h) ----
namespace {

// gemm_f32_colsum_b: C equals gemm_f32's to the bit (the same tiles), and the
// column sums equal reduce_sum over op(B)'s rows to the bit (both sum each
// column in double, k in order), on the tiled and the gemv paths.
void check_colsum(bool ta, bool tb, Shape s, int64_t pad) {
  std::mt19937 rng(unsigned(s.M * 7 + s.N * 3 + s.K + (ta ? 5 : 0) + (tb ? 11 : 0)));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t lda = (ta ? s.M : s.K) + pad, ldb = (tb ? s.K : s.N) + pad, ldc = s.N + pad;
  std::vector<float> A(size_t(std::max<int64_t>(1, (ta ? s.K : s.M) * lda)));
  std::vector<float> B(size_t(std::max<int64_t>(1, (tb ? s.N : s.K) * ldb)));
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  std::vector<float> C_fused(size_t(std::max<int64_t>(1, s.M * ldc)), 7.0f), C_plain = C_fused;
  std::vector<float> colsum(size_t(s.N) + 1, -1.0f);
  colsum[size_t(s.N)] = 12345.0f;  // sentinel past the end
  ms::cpu::gemm_f32_colsum_b(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.5f,
                             C_fused.data(), ldc, colsum.data());
  ms::cpu::gemm_f32(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.5f,
                    C_plain.data(), ldc);
  std::vector<float> dense(size_t(std::max<int64_t>(1, s.K * s.N)));  // op(B) (K, N)
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t j = 0; j < s.N; ++j)
      dense[k * s.N + j] = tb ? B[j * ldb + k] : B[k * ldb + j];
  std::vector<float> want(size_t(s.N) + 1, 0.0f);
  if (s.N > 0) ms::cpu::reduce_sum<float>(dense.data(), want.data(), 1, s.K, s.N);
  INFO("ta=" << ta << " tb=" << tb << " M=" << s.M << " N=" << s.N << " K=" << s.K);
  CHECK(C_fused == C_plain);
  // N == 1: reduce_sum's one-column path adds in simd lanes; the fused path's
  // twin adds in order, so the two agree to rounding only.
  const float tol = s.N == 1 ? 1e-5f * float(s.K + 1) : 0.0f;
  int64_t bad = 0;
  for (int64_t j = 0; j < s.N; ++j)
    if (std::fabs(colsum[j] - want[j]) > tol && bad++ < 3)
      UNSCOPED_INFO("colsum[" << j << "] = " << colsum[j] << ", want " << want[j]);
  CHECK(bad == 0);
  CHECK(colsum[size_t(s.N)] == 12345.0f);
}

const Shape kFusedShapes[] = {{7, 13, 5},    {25, 65, 257}, {300, 257, 513}, {1, 100, 37},
                              {100, 1, 37},  {4, 6, 0},     {0, 5, 3},       {300, 40, 600},
                              {40, 1600, 70}};

}  // namespace

TEST_CASE("gemm_f32_colsum_b equals gemm_f32 then reduce_sum, every path and thread split",
          "[gemm]") {
  // {300, 40, 600} splits rows over 2 threads (tm = 2): only the first row band sums.
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Shape& s : kFusedShapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) check_colsum(ta, tb, s, threads);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("gemm_f32_colsum_b on every micro-kernel this CPU can run", "[gemm]") {
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    if (!ms::cpu::gemm_f32_force_isa(isa)) continue;
    INFO("isa " << isa);
    for (Shape s : {Shape{24, 64, 20}, Shape{37, 70, 300}, Shape{130, 129, 260}})
      for (bool ta : {false, true}) {
        check_colsum(ta, false, s, 1);
        check_colsum(ta, true, s, 1);
      }
  }
  REQUIRE(ms::cpu::gemm_f32_force_isa("auto"));
}

namespace {

// C from gemm_f32 (gemm_f32_bias, gemm_f32_colsum_b) with op(A) read in
// place where the kernel can, and again with it always packed: the same FMAs
// and sums in the same order, so every float must be equal, not just close.
// which: 0 plain (alpha, beta), 1 with a bias, 2 with column sums.
void check_in_place_matches_packed(bool tb, Shape s, int64_t lda_pad, float beta, int which,
                                   int threads) {
  std::mt19937 rng(unsigned(s.M * 7 + s.N * 3 + s.K + lda_pad + which));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t lda = s.K + lda_pad, ldb = (tb ? s.K : s.N) + 1, ldc = s.N + 2;
  std::vector<float> A(size_t(s.M * lda)), B(size_t((tb ? s.N : s.K) * ldb)),
      C0(size_t(s.M * ldc)), bvec(size_t(s.N));
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  for (float& x : C0) x = dist(rng);
  for (float& x : bvec) x = dist(rng);
  auto run = [&](bool packed) {
    std::vector<float> C = C0, sums(size_t(s.N));
    ms::cpu::gemm_f32_force_packing(packed);
    omp_set_num_threads(threads);
    if (which == 1)
      ms::cpu::gemm_f32_bias(false, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb,
                             bvec.data(), C.data(), ldc);
    else if (which == 2)
      ms::cpu::gemm_f32_colsum_b(false, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb,
                                 beta, C.data(), ldc, sums.data());
    else
      ms::cpu::gemm_f32(false, tb, s.M, s.N, s.K, 0.75f, A.data(), lda, B.data(), ldb, beta,
                        C.data(), ldc);
    ms::cpu::gemm_f32_force_packing(false);
    C.insert(C.end(), sums.begin(), sums.end());
    return C;
  };
  const std::vector<float> in_place = run(false), packed = run(true);
  int64_t differ = 0;
  for (size_t i = 0; i < in_place.size(); ++i) differ += in_place[i] != packed[i];
  INFO("tb=" << tb << " M=" << s.M << " N=" << s.N << " K=" << s.K << " lda=" << lda
             << " beta=" << beta << " which=" << which << " threads=" << threads);
  CHECK(differ == 0);
}

}  // namespace

TEST_CASE("gemm_f32 reading op(A) in place equals packing it, bit for bit", "[gemm]") {
  // Whole slivers only (24 = 2 x 12 = 4 x 6 rows), an edge sliver (37), two
  // K slabs (300 > KC), C split over 2 threads, bias and column sums; lda
  // 1024 (K 1000 + 24) puts every row in one L1 set and packs anyway.
  const int saved = omp_get_max_threads();
  for (const char* isa : {"avx2", "avx512"}) {
    if (!ms::cpu::gemm_f32_force_isa(isa)) continue;
    INFO("isa " << isa);
    for (bool tb : {false, true})
      for (int threads : {1, 2}) {
        check_in_place_matches_packed(tb, {24, 64, 20}, 0, 0.0f, 0, threads);
        check_in_place_matches_packed(tb, {37, 70, 300}, 3, 1.0f, 0, threads);
        check_in_place_matches_packed(tb, {300, 129, 260}, 5, 0.0f, 1, threads);
        check_in_place_matches_packed(tb, {130, 96, 300}, 2, 0.5f, 2, threads);
        check_in_place_matches_packed(tb, {25, 33, 1000}, 24, -0.5f, 0, threads);
      }
  }
  omp_set_num_threads(saved);
  REQUIRE(ms::cpu::gemm_f32_force_isa("auto"));
}

TEST_CASE("PackedGemmF32 (attention's pre-packed B) equals gemm_f32, op(A) in place or packed",
          "[gemm]") {
  // One K slab (kc <= KC), so gemm_f32 runs the same kernel over the same k
  // order: equal bits. A slice of the packed panel (k0, n0) is the GEMM of
  // the matching sub-matrices. m = 37 has an edge sliver; lda 40 > kc.
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    if (!ms::cpu::gemm_f32_force_isa(isa)) continue;
    INFO("isa " << isa);
    const ms::cpu::PackedGemmF32 g = ms::cpu::packed_gemm_f32();
    const int64_t k_total = 70, n_total = 2 * g.nr + 5, m = 37, lda = 40, kc = 30, k0 = 20;
    const int64_t n0 = g.nr, n = n_total - n0;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> A(size_t(m * lda)), B(size_t(k_total * n_total));
    for (float& x : A) x = dist(rng);
    for (float& x : B) x = dist(rng);
    std::vector<float> Bp(size_t(g.packed_b_size(k_total, n_total)) + 16);
    float* bp = Bp.data() + (16 - (reinterpret_cast<uintptr_t>(Bp.data()) / 4) % 16) % 16;
    g.pack_b(false, B.data(), n_total, k_total, n_total, bp);
    std::vector<float> want(size_t(m * n));
    ms::cpu::gemm_f32(false, false, m, n, kc, 1.0f, A.data(), lda, B.data() + k0 * n_total + n0,
                      n_total, 0.0f, want.data(), n);
    for (bool packed : {false, true}) {
      ms::cpu::gemm_f32_force_packing(packed);
      std::vector<float> got(size_t(m * n), std::nanf(""));
      g.multiply(false, m, n, kc, 1.0f, A.data(), lda, bp, k_total, k0, n0, 0.0f, got.data(), n);
      ms::cpu::gemm_f32_force_packing(false);
      int64_t differ = 0;
      for (size_t i = 0; i < got.size(); ++i) differ += got[i] != want[i];
      INFO("packed " << packed);
      CHECK(differ == 0);
    }
  }
  REQUIRE(ms::cpu::gemm_f32_force_isa("auto"));
}
