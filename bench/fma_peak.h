// The FMA units' own limit on this core: GFLOP/s of independent vector FMAs on
// registers (no loads, no stores), every thread at once. No GEMM and no
// training step can beat it, so it bounds what a speed goal can ask: a step
// that would need more model FLOP/s than this is out of reach on this CPU.
// (Zen 4 runs a 512-bit FMA as two 256-bit halves, so its AVX-512 and AVX2
// peaks come out about equal; Intel cores with two 512-bit FMA units differ.)
#pragma once
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bench {

#if defined(__x86_64__)
// 16 (AVX-512) or 12 (AVX2) accumulators: more chains than FMA latency x
// ports (4 cycles x 2), so the units, not the dependency, set the pace.
__attribute__((target("avx512f"))) inline float fma_chains_avx512(long iters) {
  __m512 acc[16];
  const __m512 x = _mm512_set1_ps(0.9999999f), y = _mm512_set1_ps(1e-7f);
  for (__m512& a : acc) a = _mm512_set1_ps(1.0f);
  for (long i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) acc[r] = _mm512_fmadd_ps(acc[r], x, y);
  alignas(64) float lanes[16];
  float s = 0;
  for (__m512& a : acc) {
    _mm512_store_ps(lanes, a);
    for (float l : lanes) s += l;
  }
  return s;  // used by the caller, so the loop is not dropped
}
__attribute__((target("avx2,fma"))) inline float fma_chains_avx2(long iters) {
  __m256 acc[12];
  const __m256 x = _mm256_set1_ps(0.9999999f), y = _mm256_set1_ps(1e-7f);
  for (__m256& a : acc) a = _mm256_set1_ps(1.0f);
  for (long i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) acc[r] = _mm256_fmadd_ps(acc[r], x, y);
  alignas(32) float lanes[8];
  float s = 0;
  for (__m256& a : acc) {
    _mm256_store_ps(lanes, a);
    for (float l : lanes) s += l;
  }
  return s;
}
#endif

// Best GFLOP/s over 3 bursts of ~budget seconds, `threads` threads together,
// for the micro-kernel ISA named as gemm_f32_isa() names it ("avx512",
// "avx2"); 0 for any other (the scalar kernel has no peak worth quoting).
inline double fma_peak_gflops(const char* isa, int threads, double budget = 0.1) {
#if defined(__x86_64__)
  const bool wide = std::strcmp(isa, "avx512") == 0;
  if (!wide && std::strcmp(isa, "avx2") != 0) return 0;
  const double flops_per_iter = wide ? 16 * 16 * 2 : 12 * 8 * 2;
  auto burst = [&](long iters) {
    volatile float sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
      const float s = wide ? fma_chains_avx512(iters) : fma_chains_avx2(iters);
      if (s == 12345.0f) sink = s;
    }
    (void)sink;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const long probe = 1 << 20;
  const long iters = std::max<long>(probe, long(budget / std::max(burst(probe), 1e-6) * probe));
  double best = 1e300;
  for (int i = 0; i < 3; ++i) best = std::min(best, burst(iters));
  return double(threads) * double(iters) * flops_per_iter / best * 1e-9;
#else
  (void)isa, (void)threads, (void)budget;
  return 0;
#endif
}

}  // namespace bench
