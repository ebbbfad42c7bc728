#include "tensor/cpu/layernorm.h"

#include <cmath>
#include <vector>

#include "tensor/cpu/vec_math.h"

namespace ms::cpu {

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

#define MS_INSTANTIATE(T)                                                                        \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     double);                                                    \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      const T*, int64_t, int64_t);
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
#undef MS_INSTANTIATE

}  // namespace ms::cpu
