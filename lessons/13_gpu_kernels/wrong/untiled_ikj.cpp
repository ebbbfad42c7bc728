// expect: not tiled — every row of A streams all of B from memory again
// Lesson 13, deliberately wrong: correct and in the right loop order (i-k-j: the innermost loop
// runs along a row of B and of C, so it vectorizes), but with no tiles. With B in cache it is as
// fast as a tiled kernel; once B overflows the last-level cache, every row of A re-reads all of
// B from memory, and a tiled kernel (each B element loaded serving TM rows) is 2-3x faster.
#include "lessons/13_gpu_kernels/lesson.h"

void my_tiled_matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) C[i * N + j] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[i * K + k];
      for (int64_t j = 0; j < N; ++j) C[i * N + j] += a * B[k * N + j];
    }
  }
}
