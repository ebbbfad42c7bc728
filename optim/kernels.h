// The optimizer's device switch: the per-element work of a step (AdamW/SGD
// updates, the gradient sum of squares for clipping, the inf/NaN test for the
// fp16 loss scaler, zeroed state) on whatever device the tensors live on.
// CPU and Sim call the cpu:: kernel on the tensor's own memory (Sim is host
// memory that host code may not touch, so only a kernel reads it); CUDA calls
// the cuda:: twin on the device's one stream (docs/architecture.md, "Devices"),
// the updates and sums through tensor/device_kernels.h's dk:: switch.
// optim/, parallel/zero/, parallel/dp/ and parallel/tp/grad_norm reach tensor
// bytes only through here (or through ops): no host loop over a device tensor.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace ms::optim_kernels {

// AdamW's per-step scalars, computed once on the host (optim/optimizer.cpp).
struct AdamWScalars {
  float step_size, decay, b1, b2, one_minus_b1, one_minus_b2, bc2_sqrt, eps;
};
// One parameter's update: p, m, v, g contiguous f32 of one size, one device.
struct AdamWSlot {
  Tensor p, m, v, g;
};
// Every slot updated; all on one device. On CPU/Sim one parallel region over
// equal chunks of all tensors (PyTorch's foreach / llm.c's single kernel).
void adamw_update(const std::vector<AdamWSlot>& slots, const AdamWScalars& s);

// torch.optim.SGD's update on one parameter; `buf` undefined = no momentum.
void sgd_update(const Tensor& p, const Tensor& buf, const Tensor& g, float lr, float momentum,
                float weight_decay, bool first);

// Σ g² in double over a contiguous f32 tensor on any device (clipping's
// global norm, Megatron's get_grad_norm_fp32); the value comes to the host.
double sum_squares(const Tensor& g);

// True when a contiguous float tensor holds an inf or NaN (the fp16 loss
// scaler's overflow test, DeepSpeed's CheckOverflow._has_inf_or_nan). On CUDA
// this is sum_squares(x) not finite — DeepSpeed tests float(x.float().sum())
// the same way; the sum of squares in double cannot overflow for finite f32.
bool has_nonfinite(const Tensor& t);

// A zero-filled contiguous tensor on `device` (optimizer state, ZeRO's flat
// buffers, DP's gradient buckets live on the parameters' device).
Tensor zeros_on(const Shape& shape, DType dtype, Device device);

// `t` itself when contiguous, else a contiguous copy made by the op layer.
Tensor contiguous_or_self(const Tensor& t);

}  // namespace ms::optim_kernels
