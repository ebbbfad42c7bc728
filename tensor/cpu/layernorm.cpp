#include "tensor/cpu/layernorm.h"

#include <cmath>
#include <type_traits>
#include <vector>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

namespace {

// Row statistics accumulate in T with `omp simd` partial sums, as PyTorch's
// f32 kernel does: double accumulators kept these loops scalar (LayerNorm
// forward + backward were ~4% of a training step). Over C ~ 10^3 channels the
// f32 rounding is ~1e-7 relative — tests/test_ops.cpp compares f32 with f64.
template <typename T>
[[gnu::always_inline]] inline void forward_row(T* y, T* mean, T* rstd, const T* x, const T* weight,
                                               const T* bias, int64_t C, double eps) {
  const T inv_c = T(1) / static_cast<T>(C);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < C; ++c) sum += x[c];
  const T m = sum * inv_c;
  T var = 0;  // two passes: E[(x-m)²], not E[x²]-m², which cancels catastrophically
#pragma omp simd reduction(+ : var)
  for (int64_t c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
  // Biased variance, as torch.nn.LayerNorm.
  const T s = static_cast<T>(1.0 / std::sqrt(static_cast<double>(var * inv_c) + eps));
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * s * weight[c] + bias[c];
  *mean = m;
  *rstd = s;
}

// With xhat = (x - mean)·rstd and dxhat = dout·weight:
//   dinp = rstd · (dxhat - mean(dxhat) - xhat · mean(dxhat·xhat))
//   dweight += dout·xhat;  dbias += dout   (into this thread's partial sums)
template <typename T>
[[gnu::always_inline]] inline void backward_row(T* dx, T* dw, T* db, const T* dy, const T* x,
                                                const T* weight, T mu, T rs, int64_t C) {
  const T inv_c = T(1) / static_cast<T>(C);
  T sum_dxhat = 0, sum_dxhat_xhat = 0;
#pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
  for (int64_t c = 0; c < C; ++c) {
    const T xhat = (x[c] - mu) * rs;
    const T dxhat = dy[c] * weight[c];
    sum_dxhat += dxhat;
    sum_dxhat_xhat += dxhat * xhat;
    dw[c] += dy[c] * xhat;
    db[c] += dy[c];
  }
  const T m1 = sum_dxhat * inv_c, m2 = sum_dxhat_xhat * inv_c;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const T xhat = (x[c] - mu) * rs;
    dx[c] = rs * (dy[c] * weight[c] - m1 - xhat * m2);
  }
}

MS_VECTOR_CLONES
void forward_row_f32(float* y, float* mean, float* rstd, const float* x, const float* weight,
                     const float* bias, int64_t C, double eps) {
  forward_row<float>(y, mean, rstd, x, weight, bias, C, eps);
}

MS_VECTOR_CLONES
void backward_row_f32(float* dx, float* dw, float* db, const float* dy, const float* x,
                      const float* weight, float mu, float rs, int64_t C) {
  backward_row<float>(dx, dw, db, dy, x, weight, mu, rs, C);
}

}  // namespace

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int64_t N, int64_t C, double eps) {
#pragma omp parallel for if (N >= kParallelRows) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      forward_row_f32(out + n * C, mean + n, rstd + n, inp + n * C, weight, bias, C, eps);
    } else {
      forward_row<T>(out + n * C, mean + n, rstd + n, inp + n * C, weight, bias, C, eps);
    }
  }
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int64_t N, int64_t C) {
#pragma omp parallel if (N >= kParallelRows)
  {
    // Each thread sums dweight/dbias for its rows privately, then adds them once.
    std::vector<T> dw_local(C, T(0)), db_local(C, T(0));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      if constexpr (std::is_same_v<T, float>) {
        backward_row_f32(dinp + n * C, dw_local.data(), db_local.data(), dout + n * C, inp + n * C,
                         weight, mean[n], rstd[n], C);
      } else {
        backward_row<T>(dinp + n * C, dw_local.data(), db_local.data(), dout + n * C, inp + n * C,
                        weight, mean[n], rstd[n], C);
      }
    }
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) {
      dweight[c] += dw_local[c];
      dbias[c] += db_local[c];
    }
  }
}

#define MS_INSTANTIATE(T)                                                                        \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     double);                                                    \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      const T*, int64_t, int64_t);
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
#undef MS_INSTANTIATE

}  // namespace ms::cpu
