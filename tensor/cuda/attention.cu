#include <cuda/std/limits>

#include "tensor/cuda/attention.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

constexpr int kRowsPerBlock = 4;  // one warp per (b, h, t) row of scores

// Geometry shared by the kernels: row r in [0, B·NH·T) is (b, h, t).
struct Dims {
  int64_t B, T, C, NH, hs;
};

// dot(x, y) over hs channels, lanes striding the channels (coalesced reads of
// the two rows), summed across the warp: every lane gets the result.
template <typename T>
__device__ inline T warp_dot(const T* x, const T* y, int64_t hs) {
  T acc = 0;
  for (int64_t d = threadIdx.x % 32; d < hs; d += 32) acc += x[d] * y[d];
  return detail::warp_sum(acc);
}

// att[b,h,t,:] = causal softmax of (q_t · k_s)·scale over s ≤ t, zeros beyond.
// Scores go straight into the att row; it is then exponentiated and normalized
// in place (the row, T·4 bytes, stays in L1/L2 between passes).
template <typename T>
__global__ void scores_softmax_kernel(T* att, const T* qkv, Dims g, T scale) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= g.B * g.NH * g.T) return;
  const int lane = threadIdx.x % 32;
  const int64_t t = row % g.T, bh = row / g.T, h = bh % g.NH, b = bh / g.NH;
  const int64_t C3 = 3 * g.C;
  const T* q = qkv + (b * g.T + t) * C3 + h * g.hs;   // (hs)
  const T* k0 = qkv + b * g.T * C3 + g.C + h * g.hs;  // key of token 0; token s at + s·3C
  T* a = att + row * g.T;                             // (T)
  T m = -::cuda::std::numeric_limits<T>::infinity();
  for (int64_t s = 0; s <= t; ++s) {
    const T x = warp_dot(q, k0 + s * C3, g.hs) * scale;
    if (lane == 0) a[s] = x;
    m = x > m ? x : m;
  }
  __syncwarp();  // lane 0's score stores are visible to the whole warp
  T sum = 0;
  for (int64_t s = lane; s <= t; s += 32) {
    const T e = exp(a[s] - m);
    a[s] = e;
    sum += e;
  }
  const T inv = T(1) / detail::warp_sum(sum);
  for (int64_t s = lane; s < g.T; s += 32) a[s] = s <= t ? a[s] * inv : T(0);
}

// out[b,t,h,d] = Σ_{s≤t} att[b,h,t,s] · v[b,s,h,d]: a block per (b,h,t), a
// thread per channel d; the att value is a broadcast, the v row coalesced.
template <typename T>
__global__ void att_times_v_kernel(T* out, const T* att, const T* qkv, Dims g) {
  const int64_t row = blockIdx.x, d = threadIdx.x;
  const int64_t t = row % g.T, bh = row / g.T, h = bh % g.NH, b = bh / g.NH;
  const int64_t C3 = 3 * g.C;
  const T* a = att + row * g.T;
  const T* v = qkv + b * g.T * C3 + 2 * g.C + h * g.hs + d;  // v[b, 0, h, d]; token s at + s·3C
  T acc = 0;
  for (int64_t s = 0; s <= t; ++s) acc += a[s] * v[s * C3];
  out[(b * g.T + t) * g.C + h * g.hs + d] = acc;
}

// Backward, with P = att, O = P·V, S the scaled scores:
//   dP[t,s] = dO_t · v_s;  dS = P ∘ (dP − Σ_s dP∘P) · scale   (into datt)
template <typename T>
__global__ void dscores_kernel(T* datt, const T* dout, const T* qkv, const T* att, Dims g,
                               T scale) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= g.B * g.NH * g.T) return;
  const int lane = threadIdx.x % 32;
  const int64_t t = row % g.T, bh = row / g.T, h = bh % g.NH, b = bh / g.NH;
  const int64_t C3 = 3 * g.C;
  const T* dO = dout + (b * g.T + t) * g.C + h * g.hs;
  const T* v0 = qkv + b * g.T * C3 + 2 * g.C + h * g.hs;
  const T* p = att + row * g.T;
  T* dp = datt + row * g.T;
  for (int64_t s = 0; s <= t; ++s) {
    const T x = warp_dot(dO, v0 + s * C3, g.hs);
    if (lane == 0) dp[s] = x;
  }
  __syncwarp();
  T dot = 0;
  for (int64_t s = lane; s <= t; s += 32) dot += dp[s] * p[s];
  dot = detail::warp_sum(dot);
  for (int64_t s = lane; s < g.T; s += 32) dp[s] = s <= t ? p[s] * (dp[s] - dot) * scale : T(0);
}

// dq[t,d] = Σ_{s≤t} dS[t,s] · k[s,d]: block per (b,h,t), thread per d.
template <typename T>
__global__ void dq_kernel(T* dqkv, const T* datt, const T* qkv, Dims g) {
  const int64_t row = blockIdx.x, d = threadIdx.x;
  const int64_t t = row % g.T, bh = row / g.T, h = bh % g.NH, b = bh / g.NH;
  const int64_t C3 = 3 * g.C;
  const T* ds = datt + row * g.T;
  const T* k = qkv + b * g.T * C3 + g.C + h * g.hs + d;
  T acc = 0;
  for (int64_t s = 0; s <= t; ++s) acc += ds[s] * k[s * C3];
  dqkv[(b * g.T + t) * C3 + h * g.hs + d] = acc;
}

// dk[s,d] = Σ_{t≥s} dS[t,s] · q[t,d];  dv[s,d] = Σ_{t≥s} P[t,s] · dO[t,d].
// Block per (b,h,s), thread per d: a column of dS / P read as a broadcast
// (stride T, same address for the whole block), q and dO rows coalesced.
template <typename T>
__global__ void dkv_kernel(T* dqkv, const T* datt, const T* att, const T* dout, const T* qkv,
                           Dims g) {
  const int64_t row = blockIdx.x, d = threadIdx.x;
  const int64_t s = row % g.T, bh = row / g.T, h = bh % g.NH, b = bh / g.NH;
  const int64_t C3 = 3 * g.C;
  const T* ds = datt + bh * g.T * g.T + s;  // dS[0, s]; row t at + t·T
  const T* p = att + bh * g.T * g.T + s;
  const T* q = qkv + b * g.T * C3 + h * g.hs + d;
  const T* dO = dout + b * g.T * g.C + h * g.hs + d;
  T dk = 0, dv = 0;
  for (int64_t t = s; t < g.T; ++t) {
    dk += ds[t * g.T] * q[t * C3];
    dv += p[t * g.T] * dO[t * g.C];
  }
  T* base = dqkv + (b * g.T + s) * C3 + h * g.hs + d;
  base[g.C] = dk;
  base[2 * g.C] = dv;
}

Dims check_dims(int64_t B, int64_t Tlen, int64_t C, int64_t NH, const char* what) {
  MS_CHECK(NH > 0 && C % NH == 0, what, ": C = ", C, " is not a multiple of NH = ", NH);
  const int64_t hs = C / NH;
  MS_CHECK(hs <= 1024, what, ": head size ", hs, " exceeds 1024 (one thread per channel)");
  MS_CHECK(B * NH * Tlen < (int64_t(1) << 31), what, ": B·NH·T = ", B * NH * Tlen,
           " exceeds the grid");
  return Dims{B, Tlen, C, NH, hs};
}

template <typename T>
T scale_of(int64_t hs) {
  return T(1.0 / sqrt(double(hs)));
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t Tlen, int64_t C, int64_t NH,
                       cudaStream_t stream) {
  if (B * Tlen * C == 0) return;
  const Dims g = check_dims(B, Tlen, C, NH, "attention_forward");
  const int64_t rows = B * NH * Tlen;
  const unsigned row_blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  scores_softmax_kernel<<<row_blocks, 32 * kRowsPerBlock, 0, stream>>>(att, qkv, g,
                                                                       scale_of<T>(g.hs));
  MS_CUDA_KERNEL_CHECK("attention_forward (scores)");
  att_times_v_kernel<<<unsigned(rows), unsigned(g.hs), 0, stream>>>(out, att, qkv, g);
  MS_CUDA_KERNEL_CHECK("attention_forward (att·v)");
}

template <typename T>
void attention_backward(T* dqkv, T* datt, const T* dout, const T* qkv, const T* att, int64_t B,
                        int64_t Tlen, int64_t C, int64_t NH, cudaStream_t stream) {
  if (B * Tlen * C == 0) return;
  const Dims g = check_dims(B, Tlen, C, NH, "attention_backward");
  const int64_t rows = B * NH * Tlen;
  const unsigned row_blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  dscores_kernel<<<row_blocks, 32 * kRowsPerBlock, 0, stream>>>(datt, dout, qkv, att, g,
                                                                scale_of<T>(g.hs));
  MS_CUDA_KERNEL_CHECK("attention_backward (dscores)");
  dq_kernel<<<unsigned(rows), unsigned(g.hs), 0, stream>>>(dqkv, datt, qkv, g);
  MS_CUDA_KERNEL_CHECK("attention_backward (dq)");
  dkv_kernel<<<unsigned(rows), unsigned(g.hs), 0, stream>>>(dqkv, datt, att, dout, qkv, g);
  MS_CUDA_KERNEL_CHECK("attention_backward (dk, dv)");
}

template void attention_forward<float>(float*, float*, const float*, int64_t, int64_t, int64_t,
                                       int64_t, cudaStream_t);
template void attention_forward<double>(double*, double*, const double*, int64_t, int64_t, int64_t,
                                        int64_t, cudaStream_t);
template void attention_backward<float>(float*, float*, const float*, const float*, const float*,
                                        int64_t, int64_t, int64_t, int64_t, cudaStream_t);
template void attention_backward<double>(double*, double*, const double*, const double*,
                                         const double*, int64_t, int64_t, int64_t, int64_t,
                                         cudaStream_t);

}  // namespace ms::cuda
