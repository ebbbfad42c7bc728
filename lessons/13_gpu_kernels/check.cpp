// Lesson 13 grader: my_tiled_matmul against a naive reference on square and
// odd shapes (every buffer fenced by guard values, so a read or write past
// the end shows), then timed against the naive kernel and the library's gemm;
// then this CPU's measured roofline and what fusion saves (roofline.h). It
// names the likely bug from what the output looks like:
//   C equals A·Bᵀ, Aᵀ·B or (A·B)ᵀ on a square     -> a transposed index
//   C equals the sum over k < K' only              -> the k loop stops early
//   C equals the sum over the last k tile only     -> C overwritten per k tile
//   only the last rows or columns are wrong        -> edge tiles
//   a guard value after C changed                  -> an edge tile stored its full size
//   correct, but no faster than the naive kernel   -> not tiled (or not i-k-j)
// Everything runs on ONE thread (the learner's code is single-threaded; the
// comparison is per core). No GPU is used: the lesson says why it need not be.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "lessons/13_gpu_kernels/lesson.h"
#include "lessons/13_gpu_kernels/roofline.h"
#include "lessons/lesson_check.h"
#include "tensor/cpu/gemm.h"
#include "tensor/random.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

constexpr int64_t kGuard = 1024;   // floats fenced on each side of every buffer
constexpr float kFence = 1000.0f;  // what an out-of-bounds read finds: visibly wrong

// A buffer of n floats with kGuard fence values on each side.
struct Fenced {
  std::vector<float> mem;
  int64_t n;
  explicit Fenced(int64_t n_) : mem(size_t(n_ + 2 * kGuard), kFence), n(n_) {}
  float* data() { return mem.data() + kGuard; }
  const float* data() const { return mem.data() + kGuard; }
  bool fences_intact() const {
    for (int64_t i = 0; i < kGuard; ++i)
      if (mem[size_t(i)] != kFence || mem[size_t(kGuard + n + i)] != kFence) return false;
    return true;
  }
};

Fenced random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Fenced m(rows * cols);
  Generator g(seed);
  for (int64_t i = 0; i < m.n; ++i) m.data()[i] = float(2.0 * g.uniform() - 1.0);
  return m;
}

// The naive kernel a first CUDA matmul is: one output per "thread", a dot
// product reading a row of A and a COLUMN of B (stride N: a new cache line
// per k). The checker's reference and the timing baseline.
void naive_matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += A[i * K + k] * B[k * N + j];
      C[i * N + j] = s;
    }
}

// prefix[(i*N + j)*(K+1) + k'] = Σ_{k<k'} A[i][k]·B[k][j] in double: the
// reference (k' = K) and every partial sum a wrong k loop could produce.
std::vector<double> prefix_sums(const float* A, const float* B, int64_t M, int64_t N, int64_t K) {
  std::vector<double> p(size_t(M * N * (K + 1)));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double* q = &p[size_t((i * N + j) * (K + 1))];
      q[0] = 0;
      for (int64_t k = 0; k < K; ++k) q[k + 1] = q[k] + double(A[i * K + k]) * B[k * N + j];
    }
  return p;
}

// f32 sums in any order stay within this of the exact value.
double tolerance(int64_t K) {
  return 1e-5 * double(K) + 1e-6;
}

// Does `c` (M·N values) equal `want(i, j)` everywhere, within tolerance?
bool matches(const float* c, int64_t M, int64_t N, int64_t K,
             const std::function<double(int64_t, int64_t)>& want) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      if (!(std::fabs(c[i * N + j] - want(i, j)) <= tolerance(K))) return false;
  return true;
}

std::string shape_str(int64_t M, int64_t N, int64_t K) {
  return str_cat("M ", M, ", N ", N, ", K ", K);
}

// "" if my_tiled_matmul is right on this shape; else what it looks like.
std::string check_shape(int64_t M, int64_t N, int64_t K, uint64_t seed) {
  const Fenced A = random_matrix(M, K, seed), B = random_matrix(K, N, seed + 1);
  Fenced C(M * N);
  for (int64_t i = 0; i < C.n; ++i) C.data()[i] = std::nanf("");  // C is overwritten, not read
  my_tiled_matmul(A.data(), B.data(), C.data(), M, N, K);
  const std::string at = shape_str(M, N, K);
  if (!C.fences_intact())
    return str_cat(at, ": you wrote outside C (the guard values around its ", M * N,
                   " floats changed). An edge tile stored its full size: clamp each tile's end, "
                   "min(i0 + TM, M) and min(j0 + TN, N)");
  const std::vector<double> p = prefix_sums(A.data(), B.data(), M, N, K);
  auto sum = [&](int64_t i, int64_t j, int64_t k0, int64_t k1) {
    const double* q = &p[size_t((i * N + j) * (K + 1))];
    return q[k1] - q[k0];
  };
  const float* c = C.data();
  if (matches(c, M, N, K, [&](int64_t i, int64_t j) { return sum(i, j, 0, K); })) return "";

  // What is it instead?
  const float *a = A.data(), *b = B.data();
  if (M == N && N == K) {
    auto dot = [&](auto fa, auto fb, int64_t i, int64_t j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(fa(i, k)) * fb(k, j);
      return s;
    };
    auto A_ = [&](int64_t i, int64_t k) { return a[i * K + k]; };
    auto At = [&](int64_t i, int64_t k) { return a[k * K + i]; };
    auto B_ = [&](int64_t k, int64_t j) { return b[k * N + j]; };
    auto Bt = [&](int64_t k, int64_t j) { return b[j * N + k]; };
    if (matches(c, M, N, K, [&](int64_t i, int64_t j) { return dot(A_, Bt, i, j); }))
      return str_cat(at, ": C equals A·Bᵀ — a transposed index: you read B[j][k] (B[j*K + k]) "
                         "where the product needs B[k][j] (B[k*N + j])");
    if (matches(c, M, N, K, [&](int64_t i, int64_t j) { return dot(At, B_, i, j); }))
      return str_cat(at, ": C equals Aᵀ·B — a transposed index: you read A[k][i] (A[k*M + i]) "
                         "where the product needs A[i][k] (A[i*K + k])");
    if (matches(c, M, N, K, [&](int64_t i, int64_t j) { return sum(j, i, 0, K); }))
      return str_cat(at, ": C equals (A·B)ᵀ — a transposed index: you stored C[j][i] "
                         "(C[j*M + i]) where C[i][j] (C[i*N + j]) belongs");
  }
  if (matches(c, M, N, K, [](int64_t, int64_t) { return 0.0; }))
    return str_cat(at, ": C is all zeros — wrong k-loop bounds: the k loop never ran (K = ", K,
                   " may be less than one k tile; the loop must still run, on a partial tile: "
                   "k0 < K, with the tile clamped to min(k0 + TK, K))");
  for (int64_t k1 = 1; k1 < K; ++k1)
    if (matches(c, M, N, K, [&](int64_t i, int64_t j) { return sum(i, j, 0, k1); }))
      return str_cat(at, ": C holds the sum over k < ", k1, " only — wrong k-loop bounds: the k "
                     "loop stops before K, dropping the last (partial) k tile. Run k0 up to K "
                     "and clamp the tile, min(k0 + TK, K)");
  for (int64_t k0 = 1; k0 < K; ++k0)
    if (matches(c, M, N, K, [&](int64_t i, int64_t j) { return sum(i, j, k0, K); }))
      return str_cat(at, ": C holds the sum over k >= ", k0, " only — the last k tile's. "
                     "Wrong k-loop: C (or the accumulator) is reset for every k tile instead of "
                     "once per C tile, before the k loop");
  // Where is it wrong? If the top-left quarter (inside the first full tiles)
  // is right and the rest is not, the interior tiles work and the edges do not.
  int64_t bad = 0, bad_row = M, bad_col = N;  // first wrong row / column beside the quarter
  bool quarter_right = true;
  double worst = 0;
  const int64_t hm = (M + 1) / 2, hn = (N + 1) / 2;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const double e = std::fabs(c[i * N + j] - sum(i, j, 0, K));
      if (e <= tolerance(K)) continue;
      ++bad;
      worst = std::isnan(e) ? e : std::max(worst, e);
      if (i < hm && j < hn) quarter_right = false;
      if (j < hn) bad_row = std::min(bad_row, i);
      if (i < hm) bad_col = std::min(bad_col, j);
    }
  std::string msg = str_cat(at, ": ", bad, " of ", M * N, " outputs are wrong (worst error ",
                            worst, ", tolerance ", tolerance(K), ")");
  if (quarter_right)
    return str_cat(msg, "; the top-left quarter is right, the wrong outputs start at ",
                   bad_row < M ? str_cat("row ", bad_row) : "", bad_row < M && bad_col < N ? " and " : "",
                   bad_col < N ? str_cat("column ", bad_col) : "",
                   " — wrong edge handling: the last, partial tile in M or N is skipped or "
                   "computed from the wrong elements. Clamp it (min(i0 + TM, M), min(j0 + TN, N)) "
                   "instead of assuming M and N are multiples of the tile");
  return msg;
}

double best_seconds(const std::function<void()>& f, int reps) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void check_correct() {
  // Square first: a transposed index cannot read out of bounds there, so it is named.
  struct Shape {
    int64_t M, N, K;
  };
  const Shape shapes[] = {{48, 48, 48},  {64, 64, 128}, {32, 32, 100}, {1, 1, 1},    {1, 70, 9},
                          {45, 1, 33},   {37, 53, 29},  {65, 33, 129}, {5, 200, 3},  {100, 7, 70},
                          {97, 101, 67}};
  uint64_t seed = 13;
  for (const Shape& s : shapes) {
    const std::string why = check_shape(s.M, s.N, s.K, seed += 2);
    if (!why.empty()) fail(why);
  }
  pass("my_tiled_matmul equals the naive reference on 11 shapes: square, one tile, K past a tile, "
       "M or N = 1, and odd sizes (37x53x29, 97x101x67) whose last tiles are partial; nothing "
       "written outside C");
}

void check_speed() {
  constexpr int64_t n = 384;
  const Fenced A = random_matrix(n, n, 5), B = random_matrix(n, n, 6);
  Fenced C(n * n);
  const double flops = 2.0 * n * n * n;
  // Interleaved best-of-3, so a burst of load elsewhere hits both.
  double naive = 1e300, mine = 1e300, lib = 1e300;
  for (int r = 0; r < 3; ++r) {
    naive = std::min(naive, best_seconds([&] { naive_matmul(A.data(), B.data(), C.data(), n, n, n); }, 1));
    mine = std::min(mine, best_seconds([&] { my_tiled_matmul(A.data(), B.data(), C.data(), n, n, n); }, 1));
    lib = std::min(lib, best_seconds([&] {
                     cpu::gemm_f32(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f,
                                   C.data(), n);
                   }, 1));
  }
  std::printf("  %lldx%lldx%lld on one core (best of 3): naive %.2f GFLOP/s, yours %.2f GFLOP/s, "
              "the library's gemm_f32 (packed, %s micro-kernel) %.2f GFLOP/s\n",
              (long long)n, (long long)n, (long long)n, flops / naive * 1e-9, flops / mine * 1e-9,
              cpu::gemm_f32_isa(), flops / lib * 1e-9);
  std::printf("  yours is %.1fx the naive kernel and %.0f%% of the library's gemm\n", naive / mine,
              100.0 * lib / mine);
  // 1.5x: a tiled i-k-j kernel measured ~5-10x here; the naive order cannot reach 1.5x.
  if (naive / mine < 1.5)
    fail(str_cat("your matmul is right but only ", naive / mine,
                 "x the naive kernel (need 1.5x): no faster than the naive kernel. Tile it (copy "
                 "A and B tiles into local arrays) and run the innermost loop along j, over "
                 "contiguous rows of the B tile and the accumulator, so it vectorizes"));
  pass(str_cat("tiled: ", naive / mine, "x the naive kernel's speed, measured"));
}

}  // namespace

int main() {
  omp_set_num_threads(1);
  return lesson::run_checks([] {
    std::printf("CPU only: no GPU is used. The tiled kernel here is the CUDA kernel's loop nest, "
                "with L1-resident arrays where a GPU has __shared__ memory.\n");
    check_correct();
    check_speed();
    lesson13::print_roofline();
    lesson13::print_fusion();
  });
}
