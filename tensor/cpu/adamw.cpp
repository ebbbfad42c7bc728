#include "tensor/cpu/adamw.h"

#include <algorithm>
#include <cmath>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {

// One contiguous span of the update, built per ISA (MS_VECTOR_CLONES,
// vec_math.h): the baseline build's 4-wide sqrt and divide made this loop ~3%
// of a training step.
MS_VECTOR_CLONES
void adamw_span(float* param, float* m, float* v, const float* grad, int64_t n, float step_size,
                float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,
                float bc2_sqrt, float eps) {
  for (int64_t j = 0; j < n; ++j) {
    param[j] *= decay;
    m[j] = b1 * m[j] + one_minus_b1 * grad[j];
    v[j] = b2 * v[j] + one_minus_b2 * grad[j] * grad[j];
    param[j] -= step_size * (m[j] / (std::sqrt(v[j]) / bc2_sqrt + eps));
  }
}

}  // namespace

void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float step_size,
                  float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,
                  float bc2_sqrt, float eps) {
  constexpr int64_t kChunk = 1 << 14;
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
