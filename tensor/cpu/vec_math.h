// Small helpers shared by the CPU kernels (private to tensor/cpu/).
//
// exp and tanh for f32 written as straight-line code, so `omp simd` loops
// vectorize them (libm's expf/tanhf are scalar calls: GELU spent ~25% of a
// training step in them). Accuracy: exp within 2 ulp; tanh within 2e-7
// absolute — checked against libm in tests/test_ops.cpp.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>

// The project builds for baseline x86-64 (SSE2), so a plain `omp simd` loop
// runs 4 lanes wide. Hot f32 loops are built for AVX-512, AVX2 and baseline and
// the best is picked at load time (GCC target_clones), like the GEMM
// micro-kernels: a portable binary still gets 16-wide exp/tanh. OpenMP splits
// the work outside the clones (an outlined parallel body would not inherit the
// target attribute), and what a clone calls must be inline to be built for its ISA.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MS_VECTOR_CLONES
#endif

namespace ms::cpu {

// exp(x) = 2^n · exp(r), n = round(x/ln2), |r| ≤ ln2/2; exp(r) by its Taylor
// polynomial to degree 7 (truncation < 1e-8 relative on that interval).
inline float fast_expf(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float shifter = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  float t = x * 1.44269504088896341f + shifter;
  int32_t n = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(shifter);
  float nf = t - shifter;
  float r = x - nf * 0.693145751953125f - nf * 1.428606765330187045e-06f;  // ln2 in two parts
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return std::bit_cast<float>(std::bit_cast<int32_t>(p) + (n << 23));
}

// tanh(x) = (e^{2x} − 1) / (e^{2x} + 1); |x| ≥ 9 is ±1 to f32 precision.
inline float fast_tanhf(float x) {
  x = x < -9.0f ? -9.0f : (x > 9.0f ? 9.0f : x);
  float e = fast_expf(2.0f * x);
  return (e - 1.0f) / (e + 1.0f);
}

// Shared by the row-wise kernels (softmax, layernorm, cross-entropy): below
// this many rows one thread does it, as waking the team costs more.
constexpr int64_t kParallelRows = 64;

template <typename T>
T row_max(const T* x, int64_t C) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t c = 0; c < C; ++c) m = std::max(m, x[c]);
  return m;
}

}  // namespace ms::cpu
