// Element types. f32 is the compute type; f64 exists on the CPU for gradient
// checks; bf16 and f16 are storage types (mixed precision keeps weights and
// activations in them and computes in f32), converted with round-to-nearest-even.
#pragma once
#include <cstdint>
#include <string>

#include "tensor/error.h"

namespace ms {

// I32 holds indices (token ids, targets); it is not differentiable.
enum class DType { F32, F64, BF16, F16, I32 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
inline bool is_float_dtype(DType d) {
  return d != DType::I32;
}
inline bool is_compute_dtype(DType d) {
  return d == DType::F32 || d == DType::F64;
}

// IEEE 754 binary16 and bfloat16 <-> binary32. Round-to-nearest-even; inf and
// NaN are preserved (NaN stays quiet NaN), f32 values beyond the target's range
// round to inf, and subnormals of the target type are produced and read exactly.
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t x);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t x);

// Element i of a buffer of `dtype`, as double (bf16/f16 decoded exactly).
double load_as_double(const void* base, int64_t i, DType dtype);

// Calls f(T{}) with T = float or double for a compute dtype; anything else is
// an error naming the op (bf16/f16 are storage-only: convert with to()).
template <typename F>
decltype(auto) dispatch_compute(DType dtype, const char* op, F&& f) {
  if (dtype == DType::F32) return f(float{});
  MS_CHECK(dtype == DType::F64, op, ": dtype ", dtype_name(dtype),
           " is not supported (compute dtypes: f32, f64; convert bf16/f16 with to())");
  return f(double{});
}

}  // namespace ms
