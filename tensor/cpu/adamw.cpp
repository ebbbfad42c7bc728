#include "tensor/cpu/adamw.h"

#include <algorithm>
#include <cmath>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {

// One contiguous span of the update, built per ISA (MS_VECTOR_CLONES,
// vec_math.h) and vectorized: __restrict tells GCC the four arrays do not
// overlap, and this file is built with -fno-math-errno (Makefile), without
// which std::sqrt keeps a scalar errno branch per element. Before both, every
// clone ran this loop one element at a time (vsqrtss/vdivss) and the
// optimizer step was ~1.5x PyTorch's (bench_train_step's optimizer column).
// The arithmetic is unchanged, so the weights are bit-identical to before.
MS_VECTOR_CLONES
void adamw_span(float* __restrict param, float* __restrict m, float* __restrict v,
                const float* __restrict grad, int64_t n, float step_size, float decay, float b1,
                float b2, float one_minus_b1, float one_minus_b2, float bc2_sqrt, float eps) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float g = grad[j];
    const float mj = b1 * m[j] + one_minus_b1 * g;
    const float vj = b2 * v[j] + one_minus_b2 * g * g;
    m[j] = mj;
    v[j] = vj;
    param[j] = param[j] * decay - step_size * (mj / (std::sqrt(vj) / bc2_sqrt + eps));
  }
}

}  // namespace

void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float step_size,
                  float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,
                  float bc2_sqrt, float eps) {
  constexpr int64_t kChunk = 1 << 14;
  if (n <= kChunk)  // optim/kernels.cpp's chunks, already inside its parallel region
    return adamw_span(param, m, v, grad, n, step_size, decay, b1, b2, one_minus_b1, one_minus_b2,
                      bc2_sqrt, eps);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for if (n > (1 << 16)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, len = std::min(kChunk, n - b);
    adamw_span(param + b, m + b, v + b, grad + b, len, step_size, decay, b1, b2, one_minus_b1,
               one_minus_b2, bc2_sqrt, eps);
  }
}

void sgd_update(float* param, float* momentum_buf, const float* grad, int64_t n, float lr,
                float momentum, float weight_decay, bool first) {
  if (momentum_buf == nullptr) {
    for (int64_t j = 0; j < n; ++j) param[j] -= lr * (grad[j] + weight_decay * param[j]);
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    float d = grad[j] + weight_decay * param[j];
    momentum_buf[j] = first ? d : momentum * momentum_buf[j] + d;
    param[j] -= lr * momentum_buf[j];
  }
}

}  // namespace ms::cpu
