// f64 GEMM on the CPU (gemm.h): the reference the gradient checks run in.
#include "tensor/cpu/gemm.h"

namespace ms::cpu {

// f64 is for gradient checks on small shapes: a plain loop nest, accumulating
// each dot product in a register, with the inner loop over contiguous memory.
void gemm_f64(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
              int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // Element strides of op(A) (M x K) and op(B) (K x N).
  const int64_t a_i = trans_a ? 1 : lda, a_k = trans_a ? lda : 1;
  const int64_t b_k = trans_b ? 1 : ldb, b_j = trans_b ? ldb : 1;
  for (int64_t i = 0; i < M; ++i) {
    double* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == 0.0 ? 0.0 : beta * c[j];
    if (K <= 0 || alpha == 0.0) continue;
    if (trans_b) {  // op(B) column j is row j of B: dot products
      for (int64_t j = 0; j < N; ++j) {
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) s += A[i * a_i + k * a_k] * B[k * b_k + j * b_j];
        c[j] += alpha * s;
      }
    } else {  // axpy over rows of B
      for (int64_t k = 0; k < K; ++k) {
        const double a = alpha * A[i * a_i + k * a_k];
        const double* b = B + k * b_k;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  }
}

}  // namespace ms::cpu
