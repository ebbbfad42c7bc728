// Lesson 13 exercise: write a tiled matmul, then run `make lesson L=13 TRY=1`.
//
// The plan (the shape of a CUDA kernel with shared-memory tiles):
//   for each (TM x TN) tile of C, at rows i0.., columns j0..:       <- one thread block
//     zero a local TM x TN accumulator                              <- registers
//     for each k tile k0.. of K:
//       copy A[i0.., k0..] (TM x TK) and B[k0.., j0..] (TK x TN)
//       into local arrays                                           <- __shared__ loads
//       accumulate: acc[i][j] += a[i][k] * b[k][j]  (i, k, j order: the inner loop
//       walks rows of b and acc, contiguous, so it vectorizes)
//     store the accumulator into C
// Mind the edges: the last tile in each of M, N and K is usually partial.
#include "lessons/13_gpu_kernels/lesson.h"
#include "tensor/error.h"

void my_tiled_matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  // TODO: the tiled loop nest above.
  (void)A, (void)B, (void)C, (void)M, (void)N, (void)K;  // delete this line once you use them
  throw ms::Error("TODO: write my_tiled_matmul in lessons/13_gpu_kernels/exercise.cpp");
}
