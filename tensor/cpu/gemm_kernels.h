// Private to tensor/cpu/gemm*.cpp: the GEMM micro-kernels, one per instruction
// set. Each computes one MR x NR tile of C from packed operands:
//
//   C[0:mr, 0:nr] = alpha * Ap·Bp + beta * C[0:mr, 0:nr]      (beta == 0: C not read)
//
//   Ap: kc x MR floats, k-major (for each k, MR consecutive values of op(A) column k)
//   Bp: kc x NR floats, k-major (for each k, NR consecutive values of op(B) row k),
//       64-byte aligned
//
// Both are zero-padded to full MR / NR by the packing code, so the k loop never
// branches; only the store looks at the true mr <= MR, nr <= NR of an edge tile.
#pragma once
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#define MS_GEMM_X86 1
#endif

namespace ms::cpu::gemm_detail {

using KernelFn = void (*)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                          int mr, int nr, float alpha, float beta);

void kernel_scalar_4x16(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr,
                        int nr, float alpha, float beta);
#ifdef MS_GEMM_X86
// Only call these after __builtin_cpu_supports says the CPU has the ISA.
void kernel_avx2_6x16(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr,
                      int nr, float alpha, float beta);
void kernel_avx512_12x32(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                         int mr, int nr, float alpha, float beta);
#endif

}  // namespace ms::cpu::gemm_detail
