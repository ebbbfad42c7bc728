// GEMM on the GPU, the twin of tensor/cpu/gemm.h:
//
//   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
//
// row-major, leading dims lda/ldb/ldc as stored (before op()), device pointers.
// Two implementations behind the same signature, chosen explicitly by the
// GemmConfig argument (last but one; the stream is last, never defaulted —
// the overloads without a GemmConfig/GemmBackend take the defaults, as the CPU
// twin's calls, which have none):
//   GemmBackend::Cublas (default) — cuBLAS / cuBLASLt, the fast one.
//   GemmBackend::Tiled — gemm_tiled.cu, a hand-written shared-memory tiled
//     kernel with register blocking: the one to read (lesson 13), ~always
//     FP32 on CUDA cores, so it ignores GemmMath.
// GemmMath picks cuBLAS's compute type for f32 data:
//   FP32 — IEEE f32 products (PyTorch's default: allow_tf32 = False),
//   TF32 — tensor cores on 10-bit-mantissa inputs, f32 accumulation,
//   BF16 — tensor cores on bf16-rounded inputs (8-bit mantissa), f32 accumulation.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

enum class GemmBackend { Cublas, Tiled };
enum class GemmMath { FP32, TF32, BF16 };

struct GemmConfig {
  GemmBackend backend = GemmBackend::Cublas;
  GemmMath math = GemmMath::FP32;
};

const char* gemm_backend_name(GemmBackend b);  // "cublas", "tiled"
const char* gemm_math_name(GemmMath m);        // "fp32", "tf32", "bf16"

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, GemmConfig config, cudaStream_t stream);

// C (M, N) = alpha * op(A) · op(B) + bias, bias (N) added to every row (a
// Linear's forward). cuBLASLt adds the bias in the GEMM's epilogue
// (CUBLASLT_EPILOGUE_BIAS, as llm.c's matmul_forward_cublaslt), except where
// M, N or K is 1 (or K is 0): cuBLASLt answers CUBLAS_STATUS_INVALID_VALUE
// for those, and PyTorch's addmm takes its bias epilogue only away from
// them, so there a plain GEMM runs and a kernel adds the bias. The tiled
// kernel adds it as it stores each C tile.
void gemm_f32_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, const float* bias,
                   float* C, int64_t ldc, GemmConfig config, cudaStream_t stream);

// f64 (gradient checks): GemmMath does not apply; cuBLAS's DGEMM or the tiled kernel.
void gemm_f64(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
              int64_t ldc, GemmBackend backend, cudaStream_t stream);

// bf16 storage (uint16_t bit patterns, as Tensor::device_data<uint16_t>() for BF16),
// f32 accumulation, C rounded once to bf16: the GEMM of bf16 mixed precision
// on the GPU. cuBLAS only (no CPU twin: the CPU widens bf16 to f32 first).
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
               uint16_t* C, int64_t ldc, cudaStream_t stream);

// The default GemmConfig{} (cuBLAS, FP32) / GemmBackend::Cublas.
inline void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, cudaStream_t stream) {
  gemm_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmConfig{}, stream);
}
inline void gemm_f32_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb,
                          const float* bias, float* C, int64_t ldc, cudaStream_t stream) {
  gemm_f32_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias, C, ldc, GemmConfig{},
                stream);
}
inline void gemm_f64(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                     const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                     double* C, int64_t ldc, cudaStream_t stream) {
  gemm_f64(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmBackend::Cublas,
           stream);
}

namespace detail {
// Whether gemm_f32_bias may use cuBLASLt's bias epilogue for these sizes
// (false: plain GEMM + bias kernel; see gemm_f32_bias).
bool lt_bias_epilogue_ok(int64_t M, int64_t N, int64_t K);

// The hand-written kernel (gemm_tiled.cu); bias may be null. gemm_f32/_f64 call these.
template <typename T>
void gemm_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, const T* bias, T* C, int64_t ldc,
                cudaStream_t stream);
}  // namespace detail

}  // namespace ms::cuda
