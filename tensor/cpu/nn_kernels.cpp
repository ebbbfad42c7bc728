#include "tensor/cpu/nn_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {
constexpr int64_t kParallelRows = 64;  // below this many rows, one thread

template <typename T>
T row_max(const T* x, int64_t C) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t c = 0; c < C; ++c) m = std::max(m, x[c]);
  return m;
}
}  // namespace

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

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* w, const T* b, int64_t N,
                       int64_t C, double eps) {
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = in + n * C;
    double m = 0;
    for (int64_t c = 0; c < C; ++c) m += x[c];
    m /= static_cast<double>(C);
    double v = 0;
    for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= static_cast<double>(C);  // biased variance, as torch.nn.LayerNorm
    T s = static_cast<T>(1.0 / std::sqrt(v + eps));
    T mt = static_cast<T>(m);
    T* y = out + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - mt) * s * w[c] + b[c];
    mean[n] = mt;
    rstd[n] = s;
  }
}

// With xhat = (x - mean)·rstd and dxhat = dout·w:
//   din = rstd · (dxhat - mean(dxhat) - xhat · mean(dxhat·xhat))
template <typename T>
void layernorm_backward(T* din, T* dw, T* db, const T* dout, const T* in, const T* w, const T* mean,
                        const T* rstd, int64_t N, int64_t C) {
#pragma omp parallel
  {
    // Each thread sums dw/db for its rows privately, then adds them once.
    std::vector<T> dw_local(C, T(0)), db_local(C, T(0));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const T* x = in + n * C;
      const T* dy = dout + n * C;
      T mu = mean[n], rs = rstd[n];
      double sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (int64_t c = 0; c < C; ++c) {
        T xhat = (x[c] - mu) * rs;
        T dxhat = dy[c] * w[c];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += static_cast<double>(dxhat) * xhat;
        dw_local[c] += dy[c] * xhat;
        db_local[c] += dy[c];
      }
      T m1 = static_cast<T>(sum_dxhat / static_cast<double>(C));
      T m2 = static_cast<T>(sum_dxhat_xhat / static_cast<double>(C));
      T* dx = din + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        T xhat = (x[c] - mu) * rs;
        dx[c] = rs * (dy[c] * w[c] - m1 - xhat * m2);
      }
    }
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) {
      dw[c] += dw_local[c];
      db[c] += db_local[c];
    }
  }
}

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

// GELU's f32 loops are built for AVX-512, AVX2 and baseline x86-64 and the
// best is picked at load time (GCC target_clones), like the GEMM micro-kernels:
// a portable binary still gets 16-wide exp/tanh. OpenMP splits the work into
// spans outside the clones, because an outlined parallel body would not
// inherit the target attribute.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MS_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MS_VECTOR_CLONES
#endif

MS_VECTOR_CLONES
static void gelu_forward_span(float* out, const float* in, int64_t n) {
  const float a = static_cast<float>(kSqrt2OverPi), k = static_cast<float>(kGeluCoeff);
  for (int64_t i = 0; i < n; ++i) {
    float x = in[i];
    out[i] = 0.5f * x * (1.0f + fast_tanhf(a * (x + k * x * x * x)));
  }
}

MS_VECTOR_CLONES
static void gelu_backward_span(float* din, const float* dout, const float* in, int64_t n) {
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

template <typename T>
void embedding_forward(T* out, const T* weight, const int32_t* idx, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n)
    std::copy(weight + idx[n] * C, weight + idx[n] * C + C, out + n * C);
}

template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* idx, int64_t N, int64_t C) {
  // Serial over tokens: two tokens with the same id add into the same row.
  for (int64_t n = 0; n < N; ++n) {
    T* row = dweight + static_cast<int64_t>(idx[n]) * C;
    const T* g = dout + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) row[c] += g[c];
  }
}

template <typename T>
double cross_entropy_forward(T* lse, const T* logits, const int32_t* targets, int64_t N,
                             int64_t V) {
  double total = 0;
#pragma omp parallel for reduction(+ : total) if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = logits + n * V;
    T m = row_max(x, V);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(x[v] - m));
    double l = static_cast<double>(m) + std::log(s);
    lse[n] = static_cast<T>(l);
    total += l - static_cast<double>(x[targets[n]]);
  }
  return total / static_cast<double>(N);
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            double dloss, int64_t N, int64_t V) {
  T scale = static_cast<T>(dloss / static_cast<double>(N));
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = logits + n * V;
    T* d = dlogits + n * V;
    T l = lse[n];
    for (int64_t v = 0; v < V; ++v) d[v] = std::exp(x[v] - l) * scale;
    d[targets[n]] -= scale;
  }
}

#define MS_INSTANTIATE(T)                                                                          \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                                \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                     \
  template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t);                            \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                 \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,   \
                                     double);                                                      \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,          \
                                      const T*, int64_t, int64_t);                                 \
  template void gelu_forward<T>(T*, const T*, int64_t);                                            \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);                                 \
  template void embedding_forward<T>(T*, const T*, const int32_t*, int64_t, int64_t);              \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t);             \
  template double cross_entropy_forward<T>(T*, const T*, const int32_t*, int64_t, int64_t);        \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, double, int64_t, \
                                          int64_t);
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
#undef MS_INSTANTIATE

}  // namespace ms::cpu
