// gemm.h's default backend: cuBLAS (GemmEx) and cuBLASLt (the bias epilogue).
//
// Row-major through a column-major library: a row-major (M, N) matrix with
// leading dim ldc is, read column-major, its transpose (N, M) with the same ld.
// So C = op(A)·op(B) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ: pass B first, A second,
// swap M and N, keep each operand's own transpose flag. Nothing is copied.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "tensor/cuda/gemm.h"
#include "tensor/cuda/kernel_util.cuh"

namespace ms::cuda {

namespace {

#define MS_CUBLAS_CALL(expr)                                                                      \
  do {                                                                                            \
    cublasStatus_t ms_st_ = (expr);                                                               \
    MS_CHECK(ms_st_ == CUBLAS_STATUS_SUCCESS, #expr, " failed: ", cublasGetStatusString(ms_st_)); \
  } while (0)

// One handle per host thread (a cuBLAS handle is not safe to share between
// threads that set different streams). Created on first use, kept for the
// process: creating one costs milliseconds and allocates device workspace.
cublasHandle_t blas_handle() {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t handle = nullptr;
    MS_CUBLAS_CALL(cublasCreate(&handle));
    return handle;
  }();
  return h;
}

// cuBLASLt wants its workspace passed per call; 32 MiB is what llm.c gives it
// (enough for Hopper's split-K / stream-K kernels). Held for the process.
constexpr size_t kLtWorkspace = 32u << 20;
struct LtState {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};
LtState& lt_state() {
  thread_local LtState s = [] {
    LtState st;
    MS_CUBLAS_CALL(cublasLtCreate(&st.handle));
    MS_CUDA_CALL(cudaMalloc(&st.workspace, kLtWorkspace));
    return st;
  }();
  return s;
}

cublasComputeType_t compute_type(GemmMath m) {
  switch (m) {
    case GemmMath::TF32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GemmMath::BF16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case GemmMath::FP32:
      break;
  }
  return CUBLAS_COMPUTE_32F;
}

cublasOperation_t op(bool t) {
  return t ? CUBLAS_OP_T : CUBLAS_OP_N;
}

void check_dims(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
  // cuBLAS's classic API takes int: refuse what would silently wrap.
  const int64_t lim = (int64_t(1) << 31) - 1;
  MS_CHECK(M <= lim && N <= lim && K <= lim && lda <= lim && ldb <= lim && ldc <= lim,
           "gemm (cublas): M, N, K = ", M, ", ", N, ", ", K, " or a leading dim exceeds 2^31 - 1");
}

// Largest power of two (up to 256) dividing the address.
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && a % al != 0) al /= 2;
  return al;
}

// Column-major rows/cols of a stored operand for cuBLASLt's layout: the
// stored row-major (r, c) matrix is a column-major (c, r) one.
void lt_bias_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, const float* bias, float* C,
                  int64_t ldc, GemmMath math, cudaStream_t stream) {
  LtState& lt = lt_state();
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  MS_CUBLAS_CALL(cublasLtMatmulDescCreate(&desc, compute_type(math), CUDA_R_32F));
  // Lt's first operand is our B, its second our A (the transpose trick above).
  const cublasOperation_t op_first = op(tb), op_second = op(ta);
  MS_CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                sizeof(op_first)));
  MS_CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                                sizeof(op_second)));
  // Column-major D is (N, M): its rows are our columns, so a per-row bias of
  // length N is exactly our per-column bias (N).
  const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  MS_CUBLAS_CALL(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  MS_CUBLAS_CALL(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  // Stored shapes, column-major view: B stored (K, N) -> (N, K); stored (N, K) -> (K, N).
  MS_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, tb ? K : N, tb ? N : K, ldb));
  MS_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, ta ? M : K, ta ? K : M, lda));
  MS_CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, ldc));
  MS_CUBLAS_CALL(cublasLtMatmulPreferenceCreate(&pref));
  MS_CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kLtWorkspace, sizeof(kLtWorkspace)));
  // The heuristic otherwise assumes 256-byte-aligned operands and may pick a
  // kernel that faults on a view (a Linear over a slice of a larger buffer).
  const uint32_t align_a = alignment(B), align_b = alignment(A), align_c = alignment(C);
  MS_CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  MS_CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  MS_CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
  MS_CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  MS_CUBLAS_CALL(
      cublasLtMatmulAlgoGetHeuristic(lt.handle, desc, la, lb, lc, lc, pref, 1, &heur, &found));
  MS_CHECK(found > 0, "gemm_f32_bias (cublasLt): no algorithm for M, N, K = ", M, ", ", N, ", ", K);
  const float beta = 0.0f;
  MS_CUBLAS_CALL(cublasLtMatmul(lt.handle, desc, &alpha, B, la, A, lb, &beta, C, lc, C, lc,
                                &heur.algo, lt.workspace, kLtWorkspace, stream));
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatmulDescDestroy(desc);
}

// C (M, N) (+)= bias (N) on every row: the epilogue cuBLASLt cannot run for
// degenerate sizes. overwrite: C = bias (K = 0, no GEMM ran).
__global__ void add_bias_kernel(float* C, int64_t ldc, const float* bias, int64_t M, int64_t N,
                                bool overwrite) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, c = i % N;
    float& out = C[r * ldc + c];
    out = overwrite ? bias[c] : out + bias[c];
  }
}

}  // namespace

bool detail::lt_bias_epilogue_ok(int64_t M, int64_t N, int64_t K) {
  return M > 1 && N > 1 && K > 1;
}

const char* gemm_backend_name(GemmBackend b) {
  return b == GemmBackend::Tiled ? "tiled" : "cublas";
}

const char* gemm_math_name(GemmMath m) {
  return m == GemmMath::TF32 ? "tf32" : m == GemmMath::BF16 ? "bf16" : "fp32";
}

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, GemmConfig config, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  if (config.backend == GemmBackend::Tiled) {
    detail::gemm_tiled<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C,
                              ldc, stream);
    return;
  }
  check_dims(M, N, K, lda, ldb, ldc);
  cublasHandle_t h = blas_handle();
  MS_CUBLAS_CALL(cublasSetStream(h, stream));
  MS_CUBLAS_CALL(cublasGemmEx(h, op(trans_b), op(trans_a), int(N), int(M), int(K), &alpha, B,
                              CUDA_R_32F, int(ldb), A, CUDA_R_32F, int(lda), &beta, C, CUDA_R_32F,
                              int(ldc), compute_type(config.math), CUBLAS_GEMM_DEFAULT));
}

void gemm_f32_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, const float* bias,
                   float* C, int64_t ldc, GemmConfig config, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  if (config.backend == GemmBackend::Tiled) {
    detail::gemm_tiled<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 0.0f, bias, C, ldc,
                              stream);
    return;
  }
  check_dims(M, N, K, lda, ldb, ldc);
  if (detail::lt_bias_epilogue_ok(M, N, K)) {
    lt_bias_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, bias, C, ldc, config.math,
                 stream);
    return;
  }
  if (K > 0)
    gemm_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc, config, stream);
  constexpr int kThreads = 256;
  add_bias_kernel<<<detail::blocks_for(M * N, kThreads), kThreads, 0, stream>>>(C, ldc, bias, M, N,
                                                                                K == 0);
  MS_CUDA_KERNEL_CHECK("gemm_f32_bias (bias)");
}

void gemm_f64(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
              int64_t ldc, GemmBackend backend, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  if (backend == GemmBackend::Tiled) {
    detail::gemm_tiled<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C,
                               ldc, stream);
    return;
  }
  check_dims(M, N, K, lda, ldb, ldc);
  cublasHandle_t h = blas_handle();
  MS_CUBLAS_CALL(cublasSetStream(h, stream));
  MS_CUBLAS_CALL(cublasDgemm(h, op(trans_b), op(trans_a), int(N), int(M), int(K), &alpha, B,
                             int(ldb), A, int(lda), &beta, C, int(ldc)));
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
               uint16_t* C, int64_t ldc, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  check_dims(M, N, K, lda, ldb, ldc);
  cublasHandle_t h = blas_handle();
  MS_CUBLAS_CALL(cublasSetStream(h, stream));
  MS_CUBLAS_CALL(cublasGemmEx(h, op(trans_b), op(trans_a), int(N), int(M), int(K), &alpha, B,
                              CUDA_R_16BF, int(ldb), A, CUDA_R_16BF, int(lda), &beta, C,
                              CUDA_R_16BF, int(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace ms::cuda
