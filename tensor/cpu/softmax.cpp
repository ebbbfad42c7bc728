#include "tensor/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

template <typename T>
void softmax_forward(T* out, const T* in, int64_t N, int64_t C) {
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = in + n * C;
    T* y = out + n * C;
    T m = row_max(x, C);
    // A row of all -inf (fully masked) gives zeros rather than NaN.
    if (m == -std::numeric_limits<T>::infinity()) {
      std::fill(y, y + C, T(0));
      continue;
    }
    double s = 0;
    for (int64_t c = 0; c < C; ++c) {
      y[c] = std::exp(x[c] - m);
      s += y[c];
    }
    T inv = static_cast<T>(1.0 / s);
    for (int64_t c = 0; c < C; ++c) y[c] *= inv;
  }
}

template <typename T>
void softmax_backward(T* din, const T* dout, const T* out, int64_t N, int64_t C) {
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* dy = dout + n * C;
    const T* y = out + n * C;
    double dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(dy[c]) * y[c];
    for (int64_t c = 0; c < C; ++c) din[n * C + c] = y[c] * (dy[c] - static_cast<T>(dot));
  }
}

template <typename T>
void log_softmax_forward(T* out, const T* in, int64_t N, int64_t C) {
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = in + n * C;
    T m = row_max(x, C);
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(static_cast<double>(x[c] - m));
    T lse = m + static_cast<T>(std::log(s));
    for (int64_t c = 0; c < C; ++c) out[n * C + c] = x[c] - lse;
  }
}

template <typename T>
void log_softmax_backward(T* din, const T* dout, const T* out, int64_t N, int64_t C) {
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* dy = dout + n * C;
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += dy[c];
    for (int64_t c = 0; c < C; ++c)
      din[n * C + c] = dy[c] - std::exp(out[n * C + c]) * static_cast<T>(s);
  }
}

template void softmax_forward<float>(float*, const float*, int64_t, int64_t);
template void softmax_forward<double>(double*, const double*, int64_t, int64_t);
template void softmax_backward<float>(float*, const float*, const float*, int64_t, int64_t);
template void softmax_backward<double>(double*, const double*, const double*, int64_t, int64_t);
template void log_softmax_forward<float>(float*, const float*, int64_t, int64_t);
template void log_softmax_forward<double>(double*, const double*, int64_t, int64_t);
template void log_softmax_backward<float>(float*, const float*, const float*, int64_t, int64_t);
template void log_softmax_backward<double>(double*, const double*, const double*, int64_t, int64_t);

}  // namespace ms::cpu
