#include "tensor/dtype.h"

#include <cstring>

#include "tensor/error.h"

namespace ms {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::BF16:
      return 2;
    case DType::F16:
      return 2;
    case DType::I32:
      return 4;
  }
  MS_ASSERT(false, "unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
  }
  MS_ASSERT(false, "unknown dtype");
}

static uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
static float float_of(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// bf16 is the top half of an f32, so rounding is: add 0x7FFF plus the lowest
// kept bit (ties go to even), then truncate. NaN must not round into inf.
uint16_t f32_to_bf16(float x) {
  uint32_t u = bits_of(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7FFFu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_f32(uint16_t x) {
  return float_of(static_cast<uint32_t>(x) << 16);
}

// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Normal f16 values have
// unbiased exponents -14..15; below that the result is subnormal (a multiple of
// 2^-24), which we produce by shifting the full 24-bit significand right with
// round-to-nearest-even on the bits shifted out.
uint16_t f32_to_f16(float x) {
  uint32_t u = bits_of(x);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);   // NaN
  if (abs == 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u);  // inf
  int32_t exp = static_cast<int32_t>(abs >> 23) - 127;
  uint32_t mant = abs & 0x7FFFFFu;
  if (exp > 15) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow -> inf
  if (exp >= -14) {
    // Normal: keep 10 of 23 mantissa bits; a carry may ripple into the
    // exponent and up to inf, which is the correct rounding.
    uint32_t h = (static_cast<uint32_t>(exp + 15) << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;
    return static_cast<uint16_t>(sign | h);
  }
  if (exp < -25) return sign;  // below half the smallest subnormal: rounds to zero
  // Subnormal: value = sig * 2^(exp-23); f16 subnormal unit is 2^-24.
  uint32_t sig = mant | 0x800000u;
  int shift = -exp - 1;  // 14..24: sig >> shift is the count of 2^-24 units
  uint32_t h = sig >> shift;
  uint32_t rest = sig & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) h += 1;
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t x) {
  uint32_t sign = static_cast<uint32_t>(x & 0x8000u) << 16;
  uint32_t exp = (x >> 10) & 0x1Fu;
  uint32_t mant = x & 0x3FFu;
  if (exp == 0x1F) return float_of(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return float_of(sign);
    // Subnormal: exact as mant * 2^-24.
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
}

double load_as_double(const void* base, int64_t i, DType dtype) {
  switch (dtype) {
    case DType::F32:
      return static_cast<const float*>(base)[i];
    case DType::F64:
      return static_cast<const double*>(base)[i];
    case DType::BF16:
      return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16:
      return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::I32:
      return static_cast<const int32_t*>(base)[i];
  }
  return 0;
}

}  // namespace ms
