// Private to tensor/cpu/gemm*.cpp and gemv.cpp: the GEMM micro-kernels, one per instruction
// set. Each computes one MR x NR tile of C from packed operands:
//
//   C[0:mr, 0:nr] = alpha * Ap·Bp + beta * C[0:mr, 0:nr] + bias[0:nr]   (beta == 0: C not read)
//
//   bias: nr floats added to every row, or nullptr. Adding it in the store
//   (llm.c's matmul_forward adds it in its loop too) replaces copying it into
//   the C tile before the k loop: those stores hit cold lines of C and stalled
//   the kernel; gemm_f32_bias 2048x768x256 went from ~137 to ~157 GFLOP/s
//   (1 thread, best of 60), equal to gemm_f32 without a bias.
//
//   Ap: kc x MR floats, k-major (for each k, MR consecutive values of op(A) column k)
//   Bp: kc x NR floats, k-major (for each k, NR consecutive values of op(B) row k),
//       64-byte aligned
//
// Both are zero-padded to full MR / NR by the packing code, so the k loop never
// branches; only the store looks at the true mr <= MR, nr <= NR of an edge tile.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__x86_64__) || defined(__i386__)
#define MS_GEMM_X86 1
#endif

namespace ms::cpu::gemm_detail {

using KernelFn = void (*)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                          int mr, int nr, float alpha, float beta, const float* bias);

// The same AVX kernels reading op(A) in place instead of from a packed sliver
// (gemm.cpp's read_a_in_place says when): op(A)[r][k] = A[r·lda + k] for all
// MR rows r (whole slivers only: every row must exist); Bp packed as above.
// Same FMAs in the same order as the packed kernel: equal results, bit for bit.
using RowsKernelFn = void (*)(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                              int64_t ldc, int mr, int nr, float alpha, float beta,
                              const float* bias);

void kernel_scalar_4x16(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr,
                        int nr, float alpha, float beta, const float* bias);
#ifdef MS_GEMM_X86
// Only call these after __builtin_cpu_supports says the CPU has the ISA.
void kernel_avx2_6x16(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr,
                      int nr, float alpha, float beta, const float* bias);
void kernel_avx512_12x32(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                         int mr, int nr, float alpha, float beta, const float* bias);

void kernel_avx2_6x16_rows(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                           int64_t ldc, int mr, int nr, float alpha, float beta, const float* bias);
void kernel_avx512_12x32_rows(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                              int64_t ldc, int mr, int nr, float alpha, float beta,
                              const float* bias);
#endif

// Grow-only, 64-byte aligned scratch owned by one thread (OpenMP threads are
// long-lived, so after the first call gemm allocates nothing). Freed at thread exit.
struct Scratch {
  float* p = nullptr;
  size_t n = 0;
  float* get(size_t want) {
    if (want > n) {
      std::free(p);
      n = (want + 15) / 16 * 16;
      p = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
      if (!p) n = 0, throw std::bad_alloc();
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};

// gemv.cpp: out[o*os] = alpha * Σ_k x[k]·Y[o*yo + k*yk] + beta * out[o*os], x contiguous.
void gemv(int64_t O, int64_t K, float alpha, const float* x, const float* Y, int64_t yo, int64_t yk,
          float beta, float* out, int64_t os);
// v itself when stride == 1, else a contiguous copy in this thread's scratch.
const float* contiguous_vector(const float* v, int64_t n, int64_t stride);

}  // namespace ms::cpu::gemm_detail
