#include "tensor/device_kernels.h"

namespace ms {

namespace {
thread_local const char* t_kernel_scope = nullptr;  // the op whose kernels may touch Sim memory
thread_local const char* t_op_label = nullptr;
}  // namespace

Device op_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    MS_CHECK(t->device() == first->device(), op,
             ": tensors on different devices: ", device_name(first->device()), " ",
             shape_str(first->shape()), " and ", device_name(t->device()), " ",
             shape_str(t->shape()), "; move one with to(Device) first");
  }
  return first ? first->device() : Device::CPU;
}

KernelScope::KernelScope(const char* op, Device device)
    : previous_(t_kernel_scope), opened_(device != Device::CPU) {
  if (opened_) t_kernel_scope = op;
}
KernelScope::~KernelScope() {
  if (opened_) t_kernel_scope = previous_;
}
const char* KernelScope::active() {
  return t_kernel_scope;
}

OpLabel::OpLabel(const char* op) : previous_(t_op_label) {
  t_op_label = op;
}
OpLabel::~OpLabel() {
  t_op_label = previous_;
}
const char* OpLabel::current() {
  return t_op_label;
}

void no_cuda_kernel(const char* op, Device device, const char* what) {
  throw Error(str_cat(op, ": ", what, " has no CUDA kernel, so it cannot run on ",
                      device_name(device),
                      " (Sim refuses what a GPU could not run); run it on the CPU"));
}

void no_cuda_build(const char* op) {
  throw Error(str_cat(op, ": a cuda tensor in a build without CUDA (build with make CUDA=1)"));
}

namespace dk {

void binary(Device d, cpu::BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  if (d != Device::CUDA) return cpu::binary(op, a, b, out);
  MS_DK_CUDA("binary op", cuda::binary(op, a, b, out, cuda::current_stream()));
}
void unary(Device d, cpu::UnaryOp op, const Tensor& a, Tensor& out, double scalar) {
  if (d != Device::CUDA) return cpu::unary(op, a, out, scalar);
  MS_DK_CUDA("unary op", cuda::unary(op, a, out, scalar, cuda::current_stream()));
}
void copy(Device d, const Tensor& src, Tensor& dst) {
  if (d != Device::CUDA) return cpu::copy(src, dst);
  MS_DK_CUDA("copy", cuda::copy(src, dst, cuda::current_stream()));
}
void fill(Device d, Tensor& t, double value) {
  if (d != Device::CUDA) return cpu::fill(t, value);
  MS_DK_CUDA("fill", cuda::fill(t, value, cuda::current_stream()));
}
void axpy(Device d, Tensor& dst, const Tensor& src, double alpha) {
  if (d != Device::CUDA) return cpu::axpy(dst, src, alpha);
  MS_DK_CUDA("axpy", cuda::axpy(dst, src, alpha, cuda::current_stream()));
}
void scale_rounded(Device d, Tensor& t, double s) {
  if (d != Device::CUDA) return cpu::scale_rounded(t, s);
  MS_DK_CUDA("scale_rounded", cuda::scale_rounded(t, s, cuda::current_stream()));
}

void gemm_f32(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  if (d != Device::CUDA)
    return cpu::gemm_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  MS_DK_CUDA("matmul", cuda::gemm_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                      ldc, cuda::GemmConfig{}, cuda::current_stream()));
}
void gemm_f32_bias(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                   const float* bias, float* C, int64_t ldc) {
  if (d != Device::CUDA)
    return cpu::gemm_f32_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias, C, ldc);
  MS_DK_CUDA("linear", cuda::gemm_f32_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias,
                                           C, ldc, cuda::GemmConfig{}, cuda::current_stream()));
}
void gemm_f32_colsum_b(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                       float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                       float beta, float* C, int64_t ldc, float* colsum_b) {
  if (d != Device::CUDA)
    return cpu::gemm_f32_colsum_b(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                  colsum_b);
  MS_ASSERT(!trans_b && ldb == N, "gemm_f32_colsum_b on CUDA: B must be a contiguous (K, N)");
  gemm_f32(d, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  reduce_sum<float>(d, B, colsum_b, 1, K, N);
}
void gemm_f64(Device d, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
              int64_t ldc) {
  if (d != Device::CUDA)
    return cpu::gemm_f64(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  MS_DK_CUDA("matmul", cuda::gemm_f64(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                      ldc, cuda::GemmBackend::Cublas, cuda::current_stream()));
}

void adamw_update(Device d, float* param, float* m, float* v, const float* grad, int64_t n,
                  float step_size, float decay, float b1, float b2, float one_minus_b1,
                  float one_minus_b2, float bc2_sqrt, float eps) {
  if (d != Device::CUDA)
    return cpu::adamw_update(param, m, v, grad, n, step_size, decay, b1, b2, one_minus_b1,
                             one_minus_b2, bc2_sqrt, eps);
  MS_DK_CUDA("adamw",
             cuda::adamw_update(param, m, v, grad, n, step_size, decay, b1, b2, one_minus_b1,
                                one_minus_b2, bc2_sqrt, eps, cuda::current_stream()));
}
void sgd_update(Device d, float* param, float* momentum_buf, const float* grad, int64_t n, float lr,
                float momentum, float weight_decay, bool first) {
  if (d != Device::CUDA)
    return cpu::sgd_update(param, momentum_buf, grad, n, lr, momentum, weight_decay, first);
  MS_DK_CUDA("sgd", cuda::sgd_update(param, momentum_buf, grad, n, lr, momentum, weight_decay,
                                     first, cuda::current_stream()));
}
double sum_squares(Device d, const float* x, int64_t n) {
  if (d != Device::CUDA) return cpu::sum_squares(x, n);
#ifdef MS_CUDA
  return cuda::sum_squares(x, n, cuda::current_stream());
#else
  no_cuda_build("sum_squares");
#endif
}

}  // namespace dk
}  // namespace ms
