#include "tensor/cpu/adamw.h"

#include <cmath>

namespace ms::cpu {

void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float step_size,
                  float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,
                  float bc2_sqrt, float eps) {
#pragma omp parallel for simd if (n > (1 << 16)) schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    param[j] *= decay;
    m[j] = b1 * m[j] + one_minus_b1 * grad[j];
    v[j] = b2 * v[j] + one_minus_b2 * grad[j] * grad[j];
    param[j] -= step_size * (m[j] / (std::sqrt(v[j]) / bc2_sqrt + eps));
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
