// The device switch of every kernel family (docs/architecture.md, "Dispatch
// on a device"). An op finds its device once (op_device), allocates its
// outputs there, opens a KernelScope and calls dk::<kernel>(device, ...);
// each dk:: function is one explicit switch:
//   CPU  -> the cpu:: kernel
//   Sim  -> the same cpu:: kernel, but reached through the device path: the
//           op allocated on Sim and took device_data() inside its KernelScope
//   CUDA -> the cuda:: twin on cuda::current_stream() (a CUDA build only)
// A kernel with no CUDA twin is an ms::Error naming the op on CUDA *and* on
// Sim: whatever runs on Sim has a kernel on the GPU.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "tensor/cpu/adamw.h"
#include "tensor/cpu/attention.h"
#include "tensor/cpu/cross_entropy.h"
#include "tensor/cpu/dropout.h"
#include "tensor/cpu/elementwise.h"
#include "tensor/cpu/flash_attention.h"
#include "tensor/cpu/embedding.h"
#include "tensor/cpu/gelu.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/layernorm.h"
#include "tensor/cpu/reductions.h"
#include "tensor/cpu/scatter.h"
#include "tensor/cpu/softmax.h"
#include "tensor/tensor.h"
#ifdef MS_CUDA
#include "tensor/cuda/dropout.h"
#include "tensor/cuda/kernels.h"
#include "tensor/cuda/runtime.h"
#include "tensor/cuda/scatter.h"
#endif

namespace ms {

// The one device of an op's defined tensors; an ms::Error naming the op and
// both devices when they differ (move one with to(Device)).
Device op_device(const char* op, std::initializer_list<const Tensor*> tensors);

// Opened by an op around the kernels it runs on a device. On Sim it is what
// makes device_data() legal: an op that forgot its device switch and handed a
// Sim tensor's pointer to a cpu:: kernel (or looped over it on the host) gets
// an ms::Error naming the caller and the op, where on a GPU it would have read
// device memory from the host. CPU tensors need no scope; CUDA pointers are
// opaque to the host anyway (NCCL and the kernels take them as they are).
// Per thread: take device pointers before an OpenMP region, not inside it.
class KernelScope {
 public:
  KernelScope(const char* op, Device device);
  ~KernelScope();
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;
  // The op whose kernels may touch Sim memory now, or null.
  static const char* active();

 private:
  const char* previous_;
  bool opened_;
};

// Names the op whose code runs (the engine sets it around every backward
// closure), so a host access error says whose backward made it.
class OpLabel {
 public:
  explicit OpLabel(const char* op);
  ~OpLabel();
  OpLabel(const OpLabel&) = delete;
  OpLabel& operator=(const OpLabel&) = delete;
  static const char* current();  // null outside any labelled region

 private:
  const char* previous_;
};

// The error for a kernel with no CUDA twin, raised on CUDA and on Sim alike.
[[noreturn]] void no_cuda_kernel(const char* op, Device device, const char* what);
// The error for Device::CUDA in a build without CUDA.
[[noreturn]] void no_cuda_build(const char* op);

#ifdef MS_CUDA
#define MS_DK_CUDA(op, call) \
  do {                       \
    call;                    \
  } while (0)
#else
#define MS_DK_CUDA(op, call) no_cuda_build(op)
#endif

// The DType of a compute element type (f32 or f64), for scratch tensors.
template <typename T>
constexpr DType compute_dtype_of() {
  return std::is_same_v<T, double> ? DType::F64 : DType::F32;
}

namespace dk {

// ---- elementwise (Tensor level: views with any strides) ----
void binary(Device d, cpu::BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void unary(Device d, cpu::UnaryOp op, const Tensor& a, Tensor& out, double scalar = 0);
void copy(Device d, const Tensor& src, Tensor& dst);  // any dtype pair; dst contiguous
void fill(Device d, Tensor& t, double value);
void axpy(Device d, Tensor& dst, const Tensor& src, double alpha);  // both contiguous
void scale_rounded(Device d, Tensor& t, double s);

// ---- pointer kernels: the cpu:: signatures with the device first ----
template <typename T>
void reduce_sum(Device d, const T* in, T* out, int64_t outer, int64_t R, int64_t inner) {
  if (d != Device::CUDA) return cpu::reduce_sum<T>(in, out, outer, R, inner);
  MS_DK_CUDA("sum", cuda::reduce_sum<T>(in, out, outer, R, inner, cuda::current_stream()));
}
template <typename T>
void reduce_max(Device d, const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R,
                int64_t inner) {
  if (d != Device::CUDA) return cpu::reduce_max<T>(in, out, argmax, outer, R, inner);
  MS_DK_CUDA("max", cuda::reduce_max<T>(in, out, argmax, outer, R, inner, cuda::current_stream()));
}
template <typename T>
void argmax_scatter(Device d, T* grad_in, const T* grad_out, const int32_t* argmax, int64_t outer,
                    int64_t R, int64_t inner) {
  if (d != Device::CUDA) return cpu::argmax_scatter<T>(grad_in, grad_out, argmax, outer, R, inner);
  MS_DK_CUDA("max backward", cuda::argmax_scatter<T>(grad_in, grad_out, argmax, outer, R, inner,
                                                     cuda::current_stream()));
}

void gemm_f32(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);
void gemm_f32_bias(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                   const float* bias, float* C, int64_t ldc);
void gemm_f64(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
              int64_t ldc);
// The GEMM with B's column sums (tensor/cpu/gemm.h). CUDA has no fused kernel
// yet and runs the unfused pair (B must be a contiguous (K, N)).
void gemm_f32_colsum_b(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                       float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                       float beta, float* C, int64_t ldc, float* colsum_b);

#define MS_DK_ROWWISE(name)                                                               \
  template <typename T>                                                                   \
  void name##_forward(Device d, T* y, const T* x, int64_t N, int64_t C) {                 \
    if (d != Device::CUDA) return cpu::name##_forward(y, x, N, C);                        \
    MS_DK_CUDA(#name, cuda::name##_forward<T>(y, x, N, C, cuda::current_stream()));       \
  }                                                                                       \
  template <typename T>                                                                   \
  void name##_backward(Device d, T* dx, const T* dy, const T* y, int64_t N, int64_t C) {  \
    if (d != Device::CUDA) return cpu::name##_backward(dx, dy, y, N, C);                  \
    MS_DK_CUDA(#name, cuda::name##_backward<T>(dx, dy, y, N, C, cuda::current_stream())); \
  }
MS_DK_ROWWISE(softmax)
MS_DK_ROWWISE(log_softmax)
#undef MS_DK_ROWWISE

template <typename T>
void layernorm_forward(Device d, T* out, T* mean, T* rstd, const T* x, const T* w, const T* b,
                       int64_t N, int64_t C, double eps) {
  if (d != Device::CUDA) return cpu::layernorm_forward<T>(out, mean, rstd, x, w, b, N, C, eps);
  MS_DK_CUDA("layernorm", cuda::layernorm_forward<T>(out, mean, rstd, x, w, b, N, C, eps,
                                                     cuda::current_stream()));
}
// dw and db accumulate: the caller zeroes them.
template <typename T>
void layernorm_backward(Device d, T* dx, T* dw, T* db, const T* dout, const T* x, const T* w,
                        const T* mean, const T* rstd, int64_t N, int64_t C) {
  if (d != Device::CUDA)
    return cpu::layernorm_backward<T>(dx, dw, db, dout, x, w, mean, rstd, N, C);
  MS_DK_CUDA("layernorm backward", cuda::layernorm_backward<T>(dx, dw, db, dout, x, w, mean, rstd,
                                                               N, C, cuda::current_stream()));
}

template <typename T>
void gelu_forward(Device d, T* out, const T* x, int64_t n) {
  if (d != Device::CUDA) return cpu::gelu_forward<T>(out, x, n);
  MS_DK_CUDA("gelu", cuda::gelu_forward<T>(out, x, n, cuda::current_stream()));
}
template <typename T>
void gelu_backward(Device d, T* dx, const T* dout, const T* x, int64_t n) {
  if (d != Device::CUDA) return cpu::gelu_backward<T>(dx, dout, x, n);
  MS_DK_CUDA("gelu backward", cuda::gelu_backward<T>(dx, dout, x, n, cuda::current_stream()));
}

template <typename T>
void embedding_forward(Device d, T* out, const T* w, const int32_t* idx, int64_t N, int64_t C) {
  if (d != Device::CUDA) return cpu::embedding_forward<T>(out, w, idx, N, C);
  MS_DK_CUDA("embedding", cuda::embedding_forward<T>(out, w, idx, N, C, cuda::current_stream()));
}
// dw accumulates: the caller zeroes it.
template <typename T>
void embedding_backward(Device d, T* dw, const T* dout, const int32_t* idx, int64_t N, int64_t C) {
  if (d != Device::CUDA) return cpu::embedding_backward<T>(dw, dout, idx, N, C);
  MS_DK_CUDA("embedding backward",
             cuda::embedding_backward<T>(dw, dout, idx, N, C, cuda::current_stream()));
}

// Returns the mean loss on the host (the CUDA twin waits for its stream).
template <typename T>
double cross_entropy_forward(Device d, T* lse, const T* logits, const int32_t* targets, int64_t N,
                             int64_t V) {
  if (d != Device::CUDA) return cpu::cross_entropy_forward<T>(lse, logits, targets, N, V);
#ifdef MS_CUDA
  return cuda::cross_entropy_forward<T>(lse, logits, targets, N, V, cuda::current_stream());
#else
  no_cuda_build("cross_entropy");
#endif
}
template <typename T>
void cross_entropy_backward(Device d, T* dlogits, const T* logits, const T* lse,
                            const int32_t* targets, double dloss, int64_t N, int64_t V) {
  if (d != Device::CUDA)
    return cpu::cross_entropy_backward<T>(dlogits, logits, lse, targets, dloss, N, V);
  MS_DK_CUDA("cross_entropy backward",
             cuda::cross_entropy_backward<T>(dlogits, logits, lse, targets, dloss, N, V,
                                             cuda::current_stream()));
}

// `keep` (B, NH, T, T) on the device, or null. The CUDA attention kernels
// have no dropout mask: attention dropout off the CPU is an error (on Sim too).
template <typename T>
void attention_forward(Device d, T* out, T* att, const T* qkv, int64_t B, int64_t Tlen, int64_t C,
                       int64_t NH, const uint8_t* keep, T keep_scale) {
  if (d == Device::CPU)
    return cpu::attention_forward<T>(out, att, qkv, B, Tlen, C, NH, keep, keep_scale);
  if (keep) no_cuda_kernel("causal_attention", d, "attention dropout (attn_pdrop > 0)");
  if (d == Device::Sim) return cpu::attention_forward<T>(out, att, qkv, B, Tlen, C, NH);
  MS_DK_CUDA("causal_attention",
             cuda::attention_forward<T>(out, att, qkv, B, Tlen, C, NH, cuda::current_stream()));
}
template <typename T>
void attention_backward(Device d, T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att,
                        int64_t B, int64_t Tlen, int64_t C, int64_t NH, const uint8_t* keep,
                        T keep_scale) {
  if (d == Device::CPU)
    return cpu::attention_backward<T>(dqkv, scratch, dout, qkv, att, B, Tlen, C, NH, keep,
                                      keep_scale);
  if (keep) no_cuda_kernel("causal_attention backward", d, "attention dropout (attn_pdrop > 0)");
  if (d == Device::Sim)
    return cpu::attention_backward<T>(dqkv, scratch, dout, qkv, att, B, Tlen, C, NH);
  MS_DK_CUDA("causal_attention backward",
             cuda::attention_backward<T>(dqkv, scratch, dout, qkv, att, B, Tlen, C, NH,
                                         cuda::current_stream()));
}

// The blocked attention the op runs (tensor/cpu/flash_attention.h): it saves
// out and the log-sum-exp lse (B, NH, T), never P (B, NH, T, T). CPU and Sim
// run the blocked cpu:: kernel. tensor/cuda has no blocked twin yet: CUDA runs
// the unfused cuda:: kernels with P in a scratch tensor that lives only inside
// the call, and its backward recomputes P by running the forward again, so the
// op saves the same tensors on every device (the lse is not written on CUDA:
// nothing reads it there). Attention dropout off the CPU stays an error.
template <typename T>
void flash_attention_forward(Device d, T* out, T* lse, const T* qkv, int64_t B, int64_t Tlen,
                             int64_t C, int64_t NH, const uint8_t* keep, T keep_scale) {
  if (d == Device::CPU)
    return cpu::flash_attention_forward<T>(out, lse, qkv, B, Tlen, C, NH, keep, keep_scale);
  if (keep) no_cuda_kernel("causal_attention", d, "attention dropout (attn_pdrop > 0)");
  if (d == Device::Sim) return cpu::flash_attention_forward<T>(out, lse, qkv, B, Tlen, C, NH);
  (void)lse;
  MS_DK_CUDA("causal_attention", {
    Tensor att = Tensor::empty({B, NH, Tlen, Tlen}, compute_dtype_of<T>(), Device::CUDA);
    cuda::attention_forward<T>(out, att.device_data<T>(), qkv, B, Tlen, C, NH,
                               cuda::current_stream());
  });
}
template <typename T>
void flash_attention_backward(Device d, T* dqkv, const T* dout, const T* qkv, const T* out,
                              const T* lse, int64_t B, int64_t Tlen, int64_t C, int64_t NH,
                              const uint8_t* keep, T keep_scale) {
  if (d == Device::CPU)
    return cpu::flash_attention_backward<T>(dqkv, dout, qkv, out, lse, B, Tlen, C, NH, keep,
                                            keep_scale);
  if (keep) no_cuda_kernel("causal_attention backward", d, "attention dropout (attn_pdrop > 0)");
  if (d == Device::Sim)
    return cpu::flash_attention_backward<T>(dqkv, dout, qkv, out, lse, B, Tlen, C, NH);
  MS_DK_CUDA("causal_attention backward", {
    const DType dt = compute_dtype_of<T>();
    Tensor att = Tensor::empty({B, NH, Tlen, Tlen}, dt, Device::CUDA);      // P, recomputed
    Tensor scratch = Tensor::empty({B, NH, Tlen, Tlen}, dt, Device::CUDA);  // dP
    Tensor out_again = Tensor::empty({B, Tlen, C}, dt, Device::CUDA);
    cuda::attention_forward<T>(out_again.device_data<T>(), att.device_data<T>(), qkv, B, Tlen, C,
                               NH, cuda::current_stream());
    cuda::attention_backward<T>(dqkv, scratch.device_data<T>(), dout, qkv, att.device_data<T>(),
                                B, Tlen, C, NH, cuda::current_stream());
  });
}

// out = x ∘ keep · scale over n contiguous elements (dropout forward and backward).
template <typename T>
void dropout_apply(Device d, T* out, const T* x, const uint8_t* keep, T scale, int64_t n) {
  if (d != Device::CUDA) return cpu::dropout_apply<T>(out, x, keep, scale, n);
  MS_DK_CUDA("dropout", cuda::dropout_apply<T>(out, x, keep, scale, n, cuda::current_stream()));
}

// ---- optimizer kernels (optim/, parallel/zero/): f32 flat buffers ----
void adamw_update(Device d, float* param, float* m, float* v, const float* grad, int64_t n,
                  float step_size, float decay, float b1, float b2, float one_minus_b1,
                  float one_minus_b2, float bc2_sqrt, float eps);
void sgd_update(Device d, float* param, float* momentum_buf, const float* grad, int64_t n, float lr,
                float momentum, float weight_decay, bool first);
// Σ x[i]² in double, returned to the host (the CUDA twin waits for its stream).
double sum_squares(Device d, const float* x, int64_t n);

}  // namespace dk
}  // namespace ms
