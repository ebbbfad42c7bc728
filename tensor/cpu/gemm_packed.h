// GEMM with the B operand packed once and reused (private to tensor/cpu/).
//
// gemm_f32 packs both operands on every call. A kernel that multiplies by the
// same matrix many times (blocked attention: every query tile meets the same
// head's K and V) packs it once here and runs the micro-kernel over slices of
// the packed panels, so the packing cost is paid per head instead of per tile.
// Layout is gemm.cpp's: op(B) (k, n) as ceil(n/NR) slivers, each k x NR,
// k-major, zero-padded to whole NR; a sliver's k rows are contiguous, so a
// range [k0, k0 + kc) of op(B)'s rows is the pointer + k0·NR with the same
// sliver stride.
#pragma once
#include <cstdint>

namespace ms::cpu {

struct PackedGemmF32 {
  int mr = 0, nr = 0;  // the current micro-kernel's tile (gemm_f32_isa())

  // Floats gemm_f32_pack_b needs for op(B) of k rows and n columns.
  int64_t packed_b_size(int64_t k, int64_t n) const { return (n + nr - 1) / nr * nr * k; }

  // Bp <- op(B) (k, n), B row-major with leading dimension ldb; Bp 64-byte aligned.
  void pack_b(bool trans_b, const float* B, int64_t ldb, int64_t k, int64_t n, float* Bp) const;

  // C (m, n) = alpha · op(A) (m, kc) · op(B)[k0:k0+kc, n0:n0+n] + beta · C, with
  // Bp from pack_b over k_total rows, and n0 a multiple of nr. Single-threaded
  // (called per (batch, head) task); A is packed into this thread's scratch.
  void multiply(bool trans_a, int64_t m, int64_t n, int64_t kc, float alpha, const float* A,
                int64_t lda, const float* Bp, int64_t k_total, int64_t k0, int64_t n0, float beta,
                float* C, int64_t ldc) const;

  void* impl = nullptr;  // the ISA's kernel and packers (gemm.cpp)
};

// The current ISA's packed GEMM; read once per kernel call, so a
// gemm_f32_force_isa between calls (benchmarks, tests) takes effect.
PackedGemmF32 packed_gemm_f32();

}  // namespace ms::cpu
