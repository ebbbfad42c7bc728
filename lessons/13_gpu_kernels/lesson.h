// Lesson 13: GPU kernels, taught on the CPU. You write a tiled matmul in
// exercise.cpp — the same tiling a CUDA kernel does with shared-memory tiles —
// and check.cpp runs it against a naive reference on odd shapes, times it
// against an untiled i-k-j loop (with B in cache, then with B past the
// last-level cache, where only tiling wins) and the library's gemm, and
// measures this CPU's roofline and what fusion saves (roofline.h). No GPU is needed or used.
#pragma once
#include <cstdint>

// Suggested tile sizes (any work, the checker only sees C and the clock): a
// TM x TN tile of C is computed from TM x TK tiles of A and TK x TN tiles of
// B, copied into small local buffers first. On a GPU those buffers are the
// block's __shared__ memory; here they are arrays that stay in L1.
constexpr int64_t kTileM = 32, kTileN = 32, kTileK = 64;

// C (M, N) = A (M, K) · B (K, N). All three are row-major and contiguous
// (A[i*K + k], B[k*N + j], C[i*N + j]); C is overwritten, not accumulated
// into. M, N, K >= 1 and need not be multiples of any tile: the last tile in
// each direction is partial. Read only A[0, M·K) and B[0, K·N); write only
// C[0, M·N).
void my_tiled_matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K);
