// expect: reset for every k tile
// Lesson 13, deliberately wrong: the accumulator is zeroed inside the k loop, so each k
// tile overwrites the last and C ends with the last tile's partial sum.
#include <algorithm>

#include "lessons/13_gpu_kernels/lesson.h"

void my_tiled_matmul(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K) {
  float a[kTileM][kTileK];  // the A tile (TM, TK): "shared memory"
  float b[kTileK][kTileN];  // the B tile (TK, TN)
  float c[kTileM][kTileN];  // the C tile's accumulators: "registers"
  for (int64_t i0 = 0; i0 < M; i0 += kTileM)
    for (int64_t j0 = 0; j0 < N; j0 += kTileN) {
      // Edge tiles: clamp, never assume M, N, K are multiples of the tile.
      const int64_t tm = std::min(kTileM, M - i0), tn = std::min(kTileN, N - j0);
      for (int64_t i = 0; i < tm; ++i)
        for (int64_t j = 0; j < tn; ++j) c[i][j] = 0.0f;
      for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
        const int64_t tk = std::min(kTileK, K - k0);
        for (int64_t i = 0; i < tm; ++i)  // BUG: reset per k tile, not per C tile
          for (int64_t j = 0; j < tn; ++j) c[i][j] = 0.0f;
        // Load each tile once; every element of it is then used tn (or tm) times.
        for (int64_t i = 0; i < tm; ++i)
          for (int64_t k = 0; k < tk; ++k) a[i][k] = A[(i0 + i) * K + k0 + k];
        for (int64_t k = 0; k < tk; ++k)
          for (int64_t j = 0; j < tn; ++j) b[k][j] = B[(k0 + k) * N + j0 + j];
        // i-k-j: the inner loop runs along a row of b and of c (contiguous,
        // so the compiler vectorizes it), accumulating over the k tiles.
        for (int64_t i = 0; i < tm; ++i)
          for (int64_t k = 0; k < tk; ++k) {
            const float aik = a[i][k];
            for (int64_t j = 0; j < tn; ++j) c[i][j] += aik * b[k][j];
          }
      }
      for (int64_t i = 0; i < tm; ++i)
        for (int64_t j = 0; j < tn; ++j) C[(i0 + i) * N + j0 + j] = c[i][j];
    }
}
