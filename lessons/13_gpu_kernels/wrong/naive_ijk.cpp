// expect: slower than even the untiled loop
// expect: walks down a column of B
// Lesson 13, deliberately wrong: correct, but the naive dot-product kernel (i-j-k): each output
// reads a column of B with stride N, one cache line per multiply-add, and nothing is reused from
// a tile. Slower than an untiled i-k-j loop even when B sits in cache.
#include "lessons/13_gpu_kernels/lesson.h"

void my_tiled_matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += A[i * K + k] * B[k * N + j];
      C[i * N + j] = s;
    }
}
