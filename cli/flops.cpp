#include "cli/flops.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "tensor/cpu/gemm.h"

namespace ms {

double model_flops_per_step(const GPTConfig& cfg, int64_t n_params, int64_t tokens, int64_t T) {
  const double n = static_cast<double>(n_params - cfg.block_size * cfg.n_embd);  // minus wpe
  const double tok = static_cast<double>(tokens);
  const double attention = 12.0 * static_cast<double>(cfg.n_layer) * static_cast<double>(T) *
                           static_cast<double>(cfg.n_embd) * tok;
  return 6.0 * n * tok + attention;
}

double gemm_peak_gflops(double budget_s) {
  constexpr int64_t M = 512, N = 768, K = 256;
  // Deterministic, non-trivial operands (zeros could take a faster path someday).
  std::vector<float> A(M * K), B(K * N), C(M * N);
  for (size_t i = 0; i < A.size(); ++i) A[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<float>(i % 5) * 0.5f - 1.0f;
  using Clock = std::chrono::steady_clock;
  auto call = [&] {
    const auto t0 = Clock::now();
    cpu::gemm_f32(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  call();  // warm-up: page in, grow the packing scratch, wake the threads
  double best = call(), spent = best;
  for (int r = 0; r < 200 && spent < budget_s; ++r) {
    const double t = call();
    best = std::min(best, t);
    spent += t;
  }
  return 2.0 * M * N * K / best * 1e-9;
}

}  // namespace ms
