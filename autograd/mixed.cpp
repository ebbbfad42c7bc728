#include "autograd/mixed.h"

#include "autograd/ops.h"

namespace ms::mixed {

std::optional<DType> result_dtype(std::initializer_list<const Tensor*> inputs, const char* op) {
  std::optional<DType> half;
  bool wide = false;  // an f32/f64 input beside the 16-bit one
  for (const Tensor* t : inputs) {
    if (!t->defined()) continue;
    const DType d = t->dtype();
    if (is_half(d)) {
      MS_CHECK(!half || *half == d, op, ": inputs mix bf16 and f16 (", dtype_name(*half), " and ",
               dtype_name(d), "); convert one with to()");
      half = d;
    } else if (d == DType::F32 || d == DType::F64) {
      wide = true;
    }
  }
  if (!half) return std::nullopt;
  return wide ? DType::F32 : *half;
}

Tensor up(const Tensor& t) {
  return t.defined() && is_half(t.dtype()) ? to(t, DType::F32) : t;
}

Tensor down(const Tensor& y, DType dtype) {
  return to(y, dtype);
}

}  // namespace ms::mixed
