// Our gemm_f32 side by side with OpenBLAS cblas_sgemm, same inputs, same run.
//
//   bench_matmul            sizes 256..2048 (NN) plus NT and TN at 1024, 1 and 2 threads
//   bench_matmul --quick    1024 only (CI smoke)
//   bench_matmul --isa avx2 force our micro-kernel (default: the best this CPU runs)
//   bench_matmul --step     the tiny GPT step's own shapes (B·T = 2048, C = 256): each
//                           Linear's forward (NN), its dX = dY·Wᵀ (NT) and dW = Xᵀ·dY (TN)
//   bench_matmul --run-step the same for one rank of `make run` (B·T = 16·64 = 1024, C = 128)
//   bench_matmul --packed   pack op(A) even where our kernel would read it in place
//                           (the A/B for gemm.cpp's read_a_in_place)
//   bench_matmul --openblas-auto   let OpenBLAS pick its kernel from the CPU model
//                           (default: the kernel of our ISA, bench/openblas_core.h)
//
// Each cell: one warm-up call, then the best of several timed repetitions
// (best-of filters out interference from other processes on a shared machine).
// GFLOP/s = 2*M*N*K / seconds.
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "bench/openblas_core.h"
#include "tensor/cpu/gemm.h"

namespace {

double best_seconds(const std::function<void()>& f) {
  f();  // warm-up: page in buffers, grow packing scratch, wake threads
  // Enough repetitions for ~0.3 s per cell, at least 3, at most 50.
  auto t0 = std::chrono::steady_clock::now();
  f();
  double best = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int reps = std::clamp(int(0.3 / std::max(best, 1e-6)), 3, 50);
  for (int r = 0; r < reps; ++r) {
    t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

struct Case {
  const char* label;
  int M, N, K;
  bool ta, tb;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, openblas_auto = false, step = false;
  int step_bt = 2048, step_c = 256;  // --step: the tiny GPT; --run-step: a rank of make run
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--step") == 0) {
      step = true;
    } else if (std::strcmp(argv[i], "--run-step") == 0) {
      step = true, step_bt = 1024, step_c = 128;
    } else if (std::strcmp(argv[i], "--packed") == 0) {
      ms::cpu::gemm_f32_force_packing(true);
    } else if (std::strcmp(argv[i], "--openblas-auto") == 0) {
      openblas_auto = true;
    } else if (std::strcmp(argv[i], "--isa") == 0 && i + 1 < argc &&
               ms::cpu::gemm_f32_force_isa(argv[i + 1])) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--step | --run-step] [--isa avx512|avx2|scalar] [--packed]\n                   [--openblas-auto]\n",
                   argv[0]);
      return 2;
    }
  }
  // OpenBLAS reads OPENBLAS_CORETYPE once, when it loads: to give the peer the
  // kernel of our ISA (bench/openblas_core.h), set it and start over.
  // --openblas-auto keeps OpenBLAS's own CPU detection.
  const std::string core = openblas_coretype();
  if (!openblas_auto && !std::getenv("OPENBLAS_CORETYPE") && !core.empty()) {
    setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    setenv("MS_BENCH_SET_CORETYPE", "1", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on with auto-detection
  }
  std::vector<Case> cases;
  if (step) {
    // (in, out) of the GPT's Linears (Conv1D layout, y = x·W): c_attn,
    // attn.c_proj, c_fc, mlp.c_proj; and the tied head (C, vocab 256).
    const int BT = step_bt, C = step_c;
    const std::pair<const char*, std::pair<int, int>> linears[] = {
        {"c_attn", {C, 3 * C}}, {"c_proj", {C, C}}, {"c_fc", {C, 4 * C}},
        {"mlp.c_proj", {4 * C, C}}, {"lm_head", {C, 256}}};
    for (const auto& [name, io] : linears) {
      const auto [in, out] = io;
      cases.push_back({name, BT, out, in, false, false});  // y = x·W
      cases.push_back({name, BT, in, out, false, true});   // dX = dY·Wᵀ
      cases.push_back({name, in, out, BT, true, false});   // dW = Xᵀ·dY
    }
  } else if (quick) {
    cases = {{"", 1024, 1024, 1024, false, false},
             {"", 1024, 1024, 1024, false, true},
             {"", 1024, 1024, 1024, true, false}};
  } else {
    for (int n : {256, 512, 1024, 2048}) cases.push_back({"", n, n, n, false, false});
    cases.push_back({"", 1024, 1024, 1024, false, true});
    cases.push_back({"", 1024, 1024, 1024, true, false});
  }
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("ours: gemm_f32 micro-kernel = %s\n", ms::cpu::gemm_f32_isa());
  // OPENBLAS_CORETYPE, if set, overrides OpenBLAS's CPU detection (read once,
  // when the library loads); the config string names the kernel it picked.
  std::printf("OpenBLAS: %s (OPENBLAS_CORETYPE=%s%s)\n", openblas_get_config(),
              coretype ? coretype : "unset, auto-detected",
              std::getenv("MS_BENCH_SET_CORETYPE") ? ", set by this benchmark to match our ISA; "
                                                     "--openblas-auto to let OpenBLAS choose"
                                                   : "");
  std::printf("C (M x N) = op(A) (M x K) * op(B) (K x N), row-major; NT = A*B^T, TN = A^T*B\n\n");
  std::printf("%10s %16s %4s %7s %14s %18s %7s\n", "layer", "M x N x K", "form", "threads",
              "ours GFLOP/s", "OpenBLAS GFLOP/s", "ratio");

  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Case& c : cases) {
    const int M = c.M, N = c.N, K = c.K;
    const int lda = c.ta ? M : K, ldb = c.tb ? K : N;
    std::vector<float> A(size_t(M) * K), B(size_t(K) * N), C1(size_t(M) * N), C2(size_t(M) * N);
    for (float& x : A) x = dist(rng);
    for (float& x : B) x = dist(rng);
    const double flops = 2.0 * M * N * K;
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      openblas_set_num_threads(threads);
      const double t_ours = best_seconds([&] {
        ms::cpu::gemm_f32(c.ta, c.tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                          C1.data(), N);
      });
      const double t_blas = best_seconds([&] {
        cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans,
                    c.tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A.data(), lda, B.data(), ldb,
                    0.0f, C2.data(), N);
      });
      // Sanity: both libraries computed the same product.
      double max_err = 0.0, max_ref = 0.0;
      for (size_t i = 0; i < C1.size(); ++i) {
        max_err = std::max(max_err, double(std::fabs(C1[i] - C2[i])));
        max_ref = std::max(max_ref, double(std::fabs(C2[i])));
      }
      const char* form = c.ta ? "TN" : c.tb ? "NT" : "NN";
      char dims[32];
      std::snprintf(dims, sizeof dims, "%dx%dx%d", M, N, K);
      std::printf("%10s %16s %4s %7d %14.1f %18.1f %7.2f%s\n", c.label, dims, form, threads,
                  flops / t_ours * 1e-9, flops / t_blas * 1e-9, t_blas / t_ours,
                  max_err <= 1e-4 * max_ref * std::sqrt(double(K)) ? "" : "  MISMATCH");
      std::fflush(stdout);
    }
  }
  return 0;
}
