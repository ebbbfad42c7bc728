// Single-precision and double-precision GEMM on the CPU, written here (no BLAS).
//
//   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
//
// op(X) is X or X^T, selected by trans_a / trans_b, so backward's A·Bᵀ and Aᵀ·B
// run at full speed without materializing a transpose. All matrices are
// row-major with leading dimensions lda, ldb, ldc (elements between rows as
// stored, i.e. before op()). A CUDA twin (cuBLAS behind the same signature)
// is planned.
#pragma once
#include <cstdint>

namespace ms::cpu {

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

// C (M, N) = alpha * op(A) · op(B) + bias, bias (N) added to every row: a
// Linear layer's forward (llm.c's matmul_forward adds the bias in its loop too).
// The micro-kernel adds the bias as it stores each C tile, instead of a
// separate pass over all of C.
void gemm_f32_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, const float* bias,
                   float* C, int64_t ldc);

// C (M, N) = alpha · op(A) · op(B) + beta · C, and colsum_b (N) = Σ_k op(B)[k][:]
// (in double, rounded once). The weight gradient dW = Xᵀ·dY of y = x·W + b
// takes its bias gradient db = Σ_rows dY from the packed slivers of dY, while
// they are in cache, instead of a second pass over all of dY. Equal to its
// unfused twin, gemm_f32 then reduce_sum over rows (tests/test_gemm.cpp).
void gemm_f32_colsum_b(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc, float* colsum_b);

void gemm_f64(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
              int64_t ldc);

// Which micro-kernel gemm_f32 runs on this CPU: "avx512", "avx2" or "scalar".
const char* gemm_f32_isa();

// Tests and benchmarks only (not thread-safe; call while no gemm is running):
// force gemm_f32's micro-kernel to "avx512", "avx2", "scalar", or back to "auto".
// Returns false (and changes nothing) if this CPU cannot run the requested one.
bool gemm_f32_force_isa(const char* isa);

// Tests and benchmarks only (same caveat): with true, gemm_f32 packs op(A)
// even where its micro-kernel could read it in place, so a test can compare
// the two paths (they must agree bit for bit). false restores the default.
void gemm_f32_force_packing(bool packed);

}  // namespace ms::cpu
