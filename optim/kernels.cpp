// The optimizer's device switch (optim/kernels.h).
#include "optim/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autograd/ops.h"
#include "tensor/device_kernels.h"  // KernelScope and the dk:: switch

namespace ms::optim_kernels {

namespace {

void check_f32(const Tensor& t, const char* op, const char* what) {
  MS_CHECK(t.dtype() == DType::F32 && t.is_contiguous(), op, ": ", what,
           " must be contiguous f32, got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

// An IEEE float is inf or NaN exactly when its exponent bits are all ones;
// testing the bits covers the 16-bit storage types without decoding them and
// lets the loop vectorize. The CPU kernel behind has_nonfinite (CPU and Sim).
template <typename Bits>
bool any_exponent_all_ones(const void* data, int64_t n, Bits mask) {
  const Bits* p = static_cast<const Bits*>(data);
  int found = 0;
#pragma omp parallel for simd reduction(| : found) if (n > (1 << 16)) schedule(static)
  for (int64_t i = 0; i < n; ++i) found |= (p[i] & mask) == mask;
  return found != 0;
}

}  // namespace

void adamw_update(const std::vector<AdamWSlot>& slots, const AdamWScalars& s) {
  if (slots.empty()) return;
  const Device device = slots[0].p.device();
  for (const AdamWSlot& k : slots) {
    for (const Tensor* t : {&k.p, &k.m, &k.v, &k.g}) {
      check_f32(*t, "adamw", "param, exp_avg, exp_avg_sq and grad");
      MS_CHECK(t->device() == device && t->numel() == k.p.numel(), "adamw: param ",
               shape_str(k.p.shape()), " on ", device_name(device), " with a state or grad ",
               shape_str(t->shape()), " on ", device_name(t->device()),
               "; all four must match in size and device");
    }
  }
  KernelScope scope("adamw", device);  // device pointers taken below, before the parallel region
  if (device == Device::CUDA) {        // one launch per tensor (tensor/device_kernels.h's switch)
    for (const AdamWSlot& k : slots)
      dk::adamw_update(device, k.p.device_data<float>(), k.m.device_data<float>(),
                       k.v.device_data<float>(), k.g.device_data<float>(), k.p.numel(), s.step_size,
                       s.decay, s.b1, s.b2, s.one_minus_b1, s.one_minus_b2, s.bc2_sqrt, s.eps);
    return;
  }
  // CPU and Sim: one pass over all tensors, cut into equal chunks shared out
  // in ONE parallel region (PyTorch's multi-tensor "foreach"/fused AdamW,
  // llm.c's single adamw kernel): per-tensor regions woke the threads ~50
  // times a step and ran every tensor under 64K elements on one thread.
  struct Chunk {
    float *p, *m, *v;
    const float* g;
    int64_t n;
  };
  constexpr int64_t kChunk = 1 << 14;
  std::vector<Chunk> chunks;
  for (const AdamWSlot& k : slots) {
    const int64_t n = k.p.numel();
    for (int64_t b = 0; b < n; b += kChunk)
      chunks.push_back({k.p.device_data<float>() + b, k.m.device_data<float>() + b,
                        k.v.device_data<float>() + b, k.g.device_data<float>() + b,
                        std::min(kChunk, n - b)});
  }
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static) if (nchunks > 4)
  for (int64_t c = 0; c < nchunks; ++c) {
    const Chunk& k = chunks[c];
    dk::adamw_update(device, k.p, k.m, k.v, k.g, k.n, s.step_size, s.decay, s.b1, s.b2,
                     s.one_minus_b1, s.one_minus_b2, s.bc2_sqrt, s.eps);
  }
}

void sgd_update(const Tensor& p, const Tensor& buf, const Tensor& g, float lr, float momentum,
                float weight_decay, bool first) {
  check_f32(p, "sgd", "param");
  check_f32(g, "sgd", "grad");
  MS_CHECK(g.device() == p.device() && (!buf.defined() || buf.device() == p.device()),
           "sgd: param on ", device_name(p.device()), " with a grad on ", device_name(g.device()),
           "; the grad and momentum buffer must be on the param's device");
  KernelScope scope("sgd", p.device());
  float* b = buf.defined() ? buf.device_data<float>() : nullptr;
  dk::sgd_update(p.device(), p.device_data<float>(), b, g.device_data<float>(), p.numel(), lr,
                 momentum, weight_decay, first);
}

double sum_squares(const Tensor& g) {
  check_f32(g, "sum_squares", "the gradient");
  KernelScope scope("sum_squares", g.device());
  return dk::sum_squares(g.device(), g.device_data<float>(), g.numel());
}

bool has_nonfinite(const Tensor& t) {
  MS_CHECK(is_float_dtype(t.dtype()), "has_overflow: gradients must be floating point (f32, f64, ",
           "bf16, f16), got ", dtype_name(t.dtype()), " of shape ", shape_str(t.shape()));
  MS_CHECK(t.is_contiguous(), "has_overflow: the gradient ", shape_str(t.shape()),
           " must be contiguous");
  if (t.device() == Device::CUDA) {
    // No isfinite kernel in tensor/cuda yet: the f32 sum of squares in double
    // is inf/NaN exactly when an element is (f32's max squared fits a double).
    const Tensor f = t.dtype() == DType::F32 ? t : contiguous(to(t, DType::F32));
    return !std::isfinite(sum_squares(f));
  }
  KernelScope scope("has_overflow", t.device());
  const void* d = t.device_raw_data();
  switch (t.dtype()) {
    case DType::F32:
      return any_exponent_all_ones<uint32_t>(d, t.numel(), 0x7F800000u);
    case DType::F64:
      return any_exponent_all_ones<uint64_t>(d, t.numel(), 0x7FF0000000000000ull);
    case DType::BF16:
      return any_exponent_all_ones<uint16_t>(d, t.numel(), uint16_t{0x7F80});
    case DType::F16:
      return any_exponent_all_ones<uint16_t>(d, t.numel(), uint16_t{0x7C00});
    default:
      return false;
  }
}

Tensor zeros_on(const Shape& shape, DType dtype, Device device) {
  return zeros(shape, dtype, device);  // the device-aware factory (tensor/factory.h)
}

Tensor contiguous_or_self(const Tensor& t) {
  return t.is_contiguous() ? t : contiguous(t);
}

}  // namespace ms::optim_kernels
