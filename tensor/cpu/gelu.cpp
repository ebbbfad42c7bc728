#include "tensor/cpu/gelu.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
constexpr double kGeluCoeff = 0.044715;

// f32 takes the vectorizable tanh; f64 (gradient checks) keeps libm's.
template <typename T>
inline T tanh_of(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return fast_tanhf(x);
  } else {
    return std::tanh(x);
  }
}
}  // namespace

// GELU's f32 loops are target_clones (see MS_VECTOR_CLONES in vec_math.h).
MS_VECTOR_CLONES
static void gelu_forward_span(float* __restrict out, const float* __restrict in, int64_t n) {
  const float a = static_cast<float>(kSqrt2OverPi), k = static_cast<float>(kGeluCoeff);
  for (int64_t i = 0; i < n; ++i) {
    float x = in[i];
    out[i] = 0.5f * x * (1.0f + fast_tanhf(a * (x + k * x * x * x)));
  }
}

MS_VECTOR_CLONES
static void gelu_backward_span(float* __restrict din, const float* __restrict dout,
                               const float* __restrict in, int64_t n) {
  const float a = static_cast<float>(kSqrt2OverPi), k = static_cast<float>(kGeluCoeff);
  for (int64_t i = 0; i < n; ++i) {
    float x = in[i];
    float t = fast_tanhf(a * (x + k * x * x * x));
    float sech2 = 1.0f - t * t;
    float local = 0.5f * (1.0f + t) + 0.5f * x * sech2 * a * (1.0f + 3.0f * k * x * x);
    din[i] = local * dout[i];
  }
}

// Calls span(begin, length) over [0, n) in chunks, in parallel when n is large.
template <typename Span>
void for_spans(int64_t n, Span span) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) span(c * kChunk, std::min(kChunk, n - c * kChunk));
}

template <typename T>
void gelu_forward(T* out, const T* in, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    for_spans(n, [&](int64_t b, int64_t len) { gelu_forward_span(out + b, in + b, len); });
  } else {
    const T a = static_cast<T>(kSqrt2OverPi), k = static_cast<T>(kGeluCoeff);
    for (int64_t i = 0; i < n; ++i) {
      T x = in[i];
      out[i] = T(0.5) * x * (T(1) + tanh_of(a * (x + k * x * x * x)));
    }
  }
}

template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    for_spans(n,
              [&](int64_t b, int64_t len) { gelu_backward_span(din + b, dout + b, in + b, len); });
  } else {
    const T a = static_cast<T>(kSqrt2OverPi), k = static_cast<T>(kGeluCoeff);
    for (int64_t i = 0; i < n; ++i) {
      T x = in[i];
      T t = tanh_of(a * (x + k * x * x * x));
      T sech2 = T(1) - t * t;
      T local = T(0.5) * (T(1) + t) + T(0.5) * x * sech2 * a * (T(1) + T(3) * k * x * x);
      din[i] = local * dout[i];
    }
  }
}

template void gelu_forward<float>(float*, const float*, int64_t);
template void gelu_forward<double>(double*, const double*, int64_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace ms::cpu
