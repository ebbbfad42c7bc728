// The optimizers' per-element updates on the GPU: the twin of
// tensor/cpu/adamw.h (llm.c's adamw_kernel2), same scalars computed once per
// step by optim/, device pointers, the stream as the last argument (stream.h).
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// param *= decay;  m = b1·m + one_minus_b1·grad;  v = b2·v + one_minus_b2·grad²
// param -= step_size · m / (√v / bc2_sqrt + eps).  param, m, v, grad: (n) on the device.
void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float step_size,
                  float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,
                  float bc2_sqrt, float eps, cudaStream_t stream);

// d = grad + wd·param;  buf = first ? d : momentum·buf + d;  param -= lr·buf
// momentum_buf == nullptr means momentum 0.
void sgd_update(float* param, float* momentum_buf, const float* grad, int64_t n, float lr,
                float momentum, float weight_decay, bool first, cudaStream_t stream);

}  // namespace ms::cuda
