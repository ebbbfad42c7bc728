// Lesson 13's measurements beside the exercise: this CPU's roofline (the
// library's gemm for the compute roof, the library's elementwise add for the
// memory roof) next to the H100/H200 datasheet roofs, and what fusion saves
// (LayerNorm and the classifier, bytes counted and time measured). All on one
// thread; every number printed is measured here except the chips', which are
// NVIDIA's datasheet figures and say so.
#pragma once
#include <algorithm>
#include <time.h>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "tensor/cpu/cross_entropy.h"
#include "tensor/cpu/elementwise.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/layernorm.h"
#include "tensor/cpu/softmax.h"
#include "tensor/factory.h"
#include "tensor/random.h"

namespace lesson13 {

using namespace ms;

// Best of `reps` runs, in this thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a machine shared
// with other processes, wall time counts the slices the scheduler gives them; CPU time counts
// only this thread's, so the roofs measure the hardware, not the load. (Every measurement here
// runs on the calling thread: the checker sets one OpenMP thread.)
inline double best_of(int reps, const std::function<void()>& f) {
  auto now = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best;
}

inline std::vector<float> random_floats(size_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v(n);
  for (float& x : v) x = float(2.0 * g.uniform() - 1.0);
  return v;
}

// The two roofs: peak FLOP/s (a big GEMM: n/6 FLOP per byte at the least
// traffic, far right of any ridge) and bandwidth (c = a + b: 1 FLOP per 12
// bytes, far left of it). Ridge = peak / bandwidth: below that many FLOP per
// byte a kernel waits on memory, above it on the arithmetic units.
inline void print_roofline() {
  constexpr int64_t n = 1024;
  std::vector<float> A = random_floats(n * n, 1), B = random_floats(n * n, 2), C(n * n);
  const double gemm_s = best_of(3, [&] {
    cpu::gemm_f32(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
  });
  const double gflops = 2.0 * n * n * n / gemm_s * 1e-9;

  constexpr int64_t m = int64_t(16) << 20;  // 64 MiB per array, well past L2
  Tensor a = full({m}, 1.0), b = full({m}, 2.0), c = zeros({m});
  cpu::binary(cpu::BinaryOp::Add, a, b, c);  // touch every page before timing
  const double add_s = best_of(5, [&] { cpu::binary(cpu::BinaryOp::Add, a, b, c); });
  const double gbs = 12.0 * m / add_s * 1e-9;  // read a, read b, write c (4 B each)
  const double ridge = gflops / gbs;

  std::printf("this CPU's roofline, measured on one core:\n");
  std::printf("  compute roof: the library's gemm_f32 %lldx%lldx%lld: %.1f GFLOP/s (%s "
              "micro-kernel)\n",
              (long long)n, (long long)n, (long long)n, gflops, cpu::gemm_f32_isa());
  std::printf("  memory roof:  the library's elementwise add on %lld floats (64 MiB per array): "
              "%.1f GB/s (12 B per element counted)\n",
              (long long)m, gbs);
  std::printf("  ridge point:  %.1f / %.1f = %.1f FLOP per byte; add does 0.08, LayerNorm ~1, "
              "a %lld-cube GEMM up to %.0f: add and LayerNorm are memory-bound, the GEMM "
              "compute-bound\n",
              gflops, gbs, ridge, (long long)n, n / 6.0);
  // NVIDIA H100 SXM / H200 SXM datasheets: 67 TFLOP/s FP32 (CUDA cores), 989 TFLOP/s
  // BF16 tensor cores dense (1,979 "with sparsity" halved), 3.35 / 4.8 TB/s HBM.
  std::printf("  the chips' roofs (NVIDIA datasheets, not measured here): H100 SXM 67 TFLOP/s "
              "FP32, 989 TFLOP/s BF16 tensor-core dense, 3.35 TB/s HBM3: ridge 20 (FP32) and "
              "295 (BF16) FLOP per byte; H200 SXM the same compute, 4.8 TB/s HBM3e: ridge 14 and "
              "206\n");
}

// LayerNorm the way an eager framework runs it without a fused kernel: one
// pass over memory per op, each writing its result (x.mean, x - mu, (x-mu)²,
// .mean, * rstd, * w, + b). Every row is C floats, N rows. Its sums are
// vectorized like the fused kernel's, so the difference measured is the bytes.
inline void layernorm_eager(const float* x, const float* w, const float* b, float* y, float* xc,
                            float* sq, float* xhat, float* y1, float* mu, float* rstd, int64_t N,
                            int64_t C) {
  for (int64_t i = 0; i < N; ++i) {  // mu = x.mean(-1)
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; ++c) s += x[i * C + c];
    mu[i] = s / float(C);
  }
  for (int64_t i = 0; i < N; ++i)  // xc = x - mu
    for (int64_t c = 0; c < C; ++c) xc[i * C + c] = x[i * C + c] - mu[i];
  for (int64_t k = 0; k < N * C; ++k) sq[k] = xc[k] * xc[k];  // sq = xc²
  for (int64_t i = 0; i < N; ++i) {                           // rstd = 1/sqrt(sq.mean + eps)
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; ++c) s += sq[i * C + c];
    rstd[i] = 1.0f / std::sqrt(s / float(C) + 1e-5f);
  }
  for (int64_t i = 0; i < N; ++i)  // xhat = xc * rstd
    for (int64_t c = 0; c < C; ++c) xhat[i * C + c] = xc[i * C + c] * rstd[i];
  for (int64_t i = 0; i < N; ++i)  // y1 = xhat * w
    for (int64_t c = 0; c < C; ++c) y1[i * C + c] = xhat[i * C + c] * w[c];
  for (int64_t i = 0; i < N; ++i)  // y = y1 + b
    for (int64_t c = 0; c < C; ++c) y[i * C + c] = y1[i * C + c] + b[c];
}

inline void print_fusion() {
  std::printf("why fusion pays, measured on one core:\n");
  {
    constexpr int64_t N = 8192, C = 768;  // GPT-2 small's B·T = 8·1024 rows
    const size_t nc = size_t(N * C);
    std::vector<float> x = random_floats(nc, 3), w = random_floats(C, 4), b = random_floats(C, 5);
    std::vector<float> y(nc), xc(nc), sq(nc), xhat(nc), y1(nc), mu(N), rstd(N);
    std::vector<float> y2(nc), mean2(N), rstd2(N);
    const double eager = best_of(3, [&] {
      layernorm_eager(x.data(), w.data(), b.data(), y.data(), xc.data(), sq.data(), xhat.data(),
                      y1.data(), mu.data(), rstd.data(), N, C);
    });
    const double fused = best_of(3, [&] {
      cpu::layernorm_forward(y2.data(), mean2.data(), rstd2.data(), x.data(), w.data(), b.data(), N,
                             C, 1e-5);
    });
    double diff = 0;
    for (size_t k = 0; k < nc; ++k) diff = std::max(diff, double(std::fabs(y[k] - y2[k])));
    // Counted per element of x: eager reads 7 and writes 5 full (N, C) tensors;
    // fused reads x once and writes y once (its three passes over a row hit L1).
    const double mb = 4.0 * double(nc) / 1e6;
    std::printf("  LayerNorm (%lld, %lld), forward: eager, one pass per op: 12 tensors of %.1f MB "
                "moved (7 read, 5 written), %.1f ms; fused (the library's layernorm_forward, one "
                "pass per row): 2 moved, %.1f ms: %.1fx faster for 6x fewer bytes (outputs agree "
                "to %.1e)\n",
                (long long)N, (long long)C, mb, eager * 1e3, fused * 1e3, eager / fused, diff);
  }
  {
    // The classifier: logits -> loss -> dlogits. 128 rows of GPT-2's vocabulary.
    constexpr int64_t N = 128, V = 50257;
    const size_t nv = size_t(N * V);
    std::vector<float> logits = random_floats(nv, 6), probs(nv), dl(nv), dl2(nv), lse(N);
    std::vector<int32_t> tgt(N);
    for (int64_t i = 0; i < N; ++i) tgt[size_t(i)] = int32_t((i * 7919) % V);
    double loss_eager = 0, loss_fused = 0;
    const double eager = best_of(3, [&] {
      cpu::softmax_forward(probs.data(), logits.data(), N, V);  // probs (N, V) stored
      double l = 0;
      for (int64_t i = 0; i < N; ++i) l -= std::log(double(probs[size_t(i * V + tgt[size_t(i)])]));
      loss_eager = l / double(N);
      for (int64_t i = 0; i < N; ++i)  // dlogits = (probs - onehot) / N
        for (int64_t v = 0; v < V; ++v)
          dl[size_t(i * V + v)] = (probs[size_t(i * V + v)] - (v == tgt[size_t(i)] ? 1.0f : 0.0f)) /
                                  float(N);
    });
    const double fused = best_of(3, [&] {
      loss_fused = cpu::cross_entropy_forward(lse.data(), logits.data(), tgt.data(), N, V);
      cpu::cross_entropy_backward(dl2.data(), logits.data(), lse.data(), tgt.data(), 1.0, N, V);
    });
    double diff = 0;
    for (size_t k = 0; k < nv; ++k) diff = std::max(diff, double(std::fabs(dl[k] - dl2[k])));
    const double mb = 4.0 * double(nv) / 1e6;
    std::printf("  classifier (%lld rows, V %lld), loss and dlogits: softmax then loss then "
                "backward: probabilities stored (%.1f MB more memory), 4 (N, V) tensors moved, "
                "%.1f ms; fused (the library's cross_entropy_forward/backward, log-sum-exp per "
                "row, no probabilities): 3 moved, %.1f ms (losses %.6f and %.6f, dlogits agree to "
                "%.1e)\n",
                (long long)N, (long long)V, mb, eager * 1e3, fused * 1e3, loss_eager, loss_fused,
                diff);
    std::printf("  at GPT-2 small's B 8, T 1024 the stored probabilities would be 8192 x 50257 x "
                "4 B = 1.65 GB in fp32; llm.c's fused classifier writes dlogits over the logits "
                "and stores none\n");
  }
}

}  // namespace lesson13
