// The matrix-vector special case of gemm_f32 (M == 1 or N == 1).
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#include "tensor/cpu/gemm_kernels.h"

namespace ms::cpu::gemm_detail {

// Matrix-vector products (M == 1 or N == 1, e.g. sampling one token) have no
// reuse to block for: every element of the matrix is used once, so speed is
// memory bandwidth. Packing would copy the matrix for nothing and the MR x NR
// kernel would waste all but one row or column. Instead, with x contiguous:
//   out[o*os] = alpha * sum_k x[k] * Y[o*yo + k*yk] + beta * out[o*os]
// as dot products when Y's rows are contiguous (yk == 1), else (yo == 1) as
// axpys of 4 rows of Y at a time into a block of outputs held on the stack.
// Both forms keep 8+ independent partial sums so the adds pipeline.
void gemv(int64_t O, int64_t K, float alpha, const float* x, const float* Y, int64_t yo, int64_t yk,
          float beta, float* out, int64_t os) {
  constexpr int64_t OB = 1024;
  const bool par = !omp_in_parallel() && double(O) * double(K) > double(1 << 20);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t o0 = 0; o0 < O; o0 += OB) {
    const int64_t ob = std::min(OB, O - o0);
    float acc[OB];
    if (yk == 1) {
      for (int64_t o = 0; o < ob; ++o) {
        const float* y = Y + (o0 + o) * yo;
        float part[16] = {};
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
          for (int l = 0; l < 16; ++l) part[l] += x[k + l] * y[k + l];
        float s = 0.0f;
        for (; k < K; ++k) s += x[k] * y[k];
        for (int l = 0; l < 16; ++l) s += part[l];
        acc[o] = s;
      }
    } else {
      for (int64_t o = 0; o < ob; ++o) acc[o] = 0.0f;
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const float *y0 = Y + k * yk + o0, *y1 = y0 + yk, *y2 = y1 + yk, *y3 = y2 + yk;
        for (int64_t o = 0; o < ob; ++o)
          acc[o] += x[k] * y0[o] + x[k + 1] * y1[o] + x[k + 2] * y2[o] + x[k + 3] * y3[o];
      }
      for (; k < K; ++k)
        for (int64_t o = 0; o < ob; ++o) acc[o] += x[k] * Y[k * yk + o0 + o];
    }
    for (int64_t o = 0; o < ob; ++o) {
      float& c = out[(o0 + o) * os];
      c = beta == 0.0f ? alpha * acc[o] : alpha * acc[o] + beta * c;
    }
  }
}

// The vector operand of a gemv, made contiguous if it is strided.
const float* contiguous_vector(const float* v, int64_t n, int64_t stride) {
  if (stride == 1) return v;
  thread_local Scratch s;
  float* p = s.get(size_t(n));
  for (int64_t i = 0; i < n; ++i) p[i] = v[i * stride];
  return p;
}

}  // namespace ms::cpu::gemm_detail
