// The optimizers' per-element updates over one flat f32 parameter (llm.c's
// adamw_kernel), kept apart from optim/ so a CUDA twin with the same signature
// (tensor/cuda/adamw.cu, planned) can replace the loop and nothing else.
// optim/optimizer.cpp computes the scalars (bias corrections, decay) once per
// step and calls these on chunks of every tensor from one parallel region;
// ZeRO runs the same optimizer on its shard.
#pragma once
#include <cstdint>

namespace ms::cpu {

// torch.optim.AdamW's single-tensor path, operation for operation:
//   param *= decay;  m = b1·m + one_minus_b1·grad;  v = b2·v + one_minus_b2·grad²
//   param -= step_size · m / (√v / bc2_sqrt + eps)
// with decay = 1 - lr·wd, step_size = lr / (1 - β1^t), bc2_sqrt = √(1 - β2^t).
// param, m, v, grad: (n), updated in place.
void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float step_size,
                  float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,
                  float bc2_sqrt, float eps);

// SGD with L2 weight decay (added to the gradient) and optional momentum, as
// torch.optim.SGD (dampening 0, no Nesterov):
//   d = grad + wd·param;  buf = first ? d : momentum·buf + d;  param -= lr·buf
// momentum_buf == nullptr means momentum 0 (param -= lr·d).
void sgd_update(float* param, float* momentum_buf, const float* grad, int64_t n, float lr,
                float momentum, float weight_decay, bool first);

}  // namespace ms::cpu
