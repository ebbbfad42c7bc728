// Lesson 13's GPU half: the exercise's tiled matmul as a CUDA kernel, beside
// the naive kernel and cuBLAS. Standalone (no minispeed library, no lesson
// checker): the CPU lesson never builds it. Build and run on a machine with a
// GPU (README, "The GPU half"):
//   nvcc -O3 -arch=sm_90 lessons/13_gpu_kernels/gpu/tiled_matmul.cu -lcublas -o tiled_matmul
//   ./tiled_matmul
// It checks both kernels against a CPU reference on odd shapes (the last tile
// partial in every direction) and then times naive, tiled and cuBLAS SGEMM
// with CUDA events on one square size, printing GFLOP/s and the tiled
// kernel's fraction of cuBLAS. Exit 1 if any result is wrong.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CHECK_CUDA(x)                                                                   \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)
#define CHECK_CUBLAS(x)                                                                 \
  do {                                                                                  \
    cublasStatus_t s_ = (x);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                  \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, int(s_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

constexpr int kTile = 32;  // a 32 x 32 thread block computes a 32 x 32 tile of C

// One thread per output: a row of A and a column of B read from global memory
// for every output (0.25 FLOP per byte in fp32, far below the ridge).
__global__ void naive_matmul(const float* A, const float* B, float* C, int M, int N, int K) {
  const int i = blockIdx.y * blockDim.y + threadIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= M || j >= N) return;
  float s = 0.0f;
  for (int k = 0; k < K; ++k) s += A[i * K + k] * B[k * N + j];
  C[i * N + j] = s;
}

// The exercise's loop nest: the block loads a kTile x kTile tile of A and of B
// into shared memory (one element per thread, zero past the edges so the inner
// loop never branches), synchronizes, and every thread accumulates its output
// from the tiles: each global load now serves kTile multiply-adds.
__global__ void tiled_matmul(const float* A, const float* B, float* C, int M, int N, int K) {
  __shared__ float a[kTile][kTile];
  __shared__ float b[kTile][kTile + 1];  // +1: no bank conflicts when read by column
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int i = blockIdx.y * kTile + ty, j = blockIdx.x * kTile + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    a[ty][tx] = i < M && k0 + tx < K ? A[i * K + k0 + tx] : 0.0f;
    b[ty][tx] = k0 + ty < K && j < N ? B[(k0 + ty) * N + j] : 0.0f;
    __syncthreads();  // the tiles are complete before anyone reads them
#pragma unroll
    for (int k = 0; k < kTile; ++k) acc += a[ty][k] * b[k][tx];
    __syncthreads();  // everyone is done reading before the next tiles overwrite them
  }
  if (i < M && j < N) C[i * N + j] = acc;
}

namespace {

void cpu_reference(const std::vector<float>& A, const std::vector<float>& B, std::vector<double>& C,
                   int M, int N, int K) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(A[size_t(i) * K + k]) * B[size_t(k) * N + j];
      C[size_t(i) * N + j] = s;
    }
}

dim3 grid_for(int M, int N) {
  return dim3(unsigned((N + kTile - 1) / kTile), unsigned((M + kTile - 1) / kTile));
}

// Row-major C = A·B through column-major cuBLAS: Cᵀ = Bᵀ·Aᵀ, and a row-major
// matrix is its transpose in column-major, so pass B first.
void cublas_matmul(cublasHandle_t h, const float* A, const float* B, float* C, int M, int N, int K) {
  const float one = 1.0f, zero = 0.0f;
  CHECK_CUBLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, B, N, A, K, &zero, C, N));
}

struct Device {
  float *A = nullptr, *B = nullptr, *C = nullptr;
  Device(size_t a, size_t b, size_t c) {
    CHECK_CUDA(cudaMalloc(&A, a * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&B, b * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&C, c * sizeof(float)));
  }
  ~Device() {
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
  }
};

enum class Which { Naive, Tiled, Cublas };
const char* name(Which w) {
  return w == Which::Naive ? "naive" : w == Which::Tiled ? "tiled" : "cuBLAS";
}

void launch(Which w, cublasHandle_t h, const Device& d, int M, int N, int K) {
  if (w == Which::Cublas) return cublas_matmul(h, d.A, d.B, d.C, M, N, K);
  const dim3 block(kTile, kTile);
  if (w == Which::Naive) naive_matmul<<<grid_for(M, N), block>>>(d.A, d.B, d.C, M, N, K);
  if (w == Which::Tiled) tiled_matmul<<<grid_for(M, N), block>>>(d.A, d.B, d.C, M, N, K);
  CHECK_CUDA(cudaGetLastError());
}

// true if kernel `w` matches the CPU reference on this shape.
bool check_shape(Which w, cublasHandle_t h, int M, int N, int K, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> A(size_t(M) * K), B(size_t(K) * N), C(size_t(M) * N);
  for (float& x : A) x = u(rng);
  for (float& x : B) x = u(rng);
  std::vector<double> ref(C.size());
  cpu_reference(A, B, ref, M, N, K);
  Device d(A.size(), B.size(), C.size());
  CHECK_CUDA(cudaMemcpy(d.A, A.data(), A.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d.B, B.data(), B.size() * sizeof(float), cudaMemcpyHostToDevice));
  launch(w, h, d, M, N, K);
  CHECK_CUDA(cudaMemcpy(C.data(), d.C, C.size() * sizeof(float), cudaMemcpyDeviceToHost));
  // cuBLAS may use TF32 tensor cores only if asked; the default SGEMM is fp32.
  const double tol = 1e-5 * K + 1e-6;
  for (size_t k = 0; k < C.size(); ++k)
    if (!(std::fabs(C[k] - ref[k]) <= tol)) {
      std::printf("FAIL: %s, M %d N %d K %d: C[%zu] = %g, expected %g\n", name(w), M, N, K, k,
                  double(C[k]), ref[k]);
      return false;
    }
  return true;
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("GPU: %s (this program's numbers are measured on it)\n", prop.name);
  cublasHandle_t h;
  CHECK_CUBLAS(cublasCreate(&h));
  std::mt19937 rng(13);
  const int shapes[][3] = {{1, 1, 1}, {37, 53, 29}, {97, 101, 67}, {64, 64, 128}, {5, 200, 3}};
  bool ok = true;
  for (Which w : {Which::Naive, Which::Tiled, Which::Cublas})
    for (const auto& s : shapes) ok = check_shape(w, h, s[0], s[1], s[2], rng) && ok;
  if (!ok) return 1;
  std::printf("PASS: naive, tiled and cuBLAS equal the CPU reference on 5 shapes, edges included\n");

  const int n = 4096;
  Device d(size_t(n) * n, size_t(n) * n, size_t(n) * n);
  CHECK_CUDA(cudaMemset(d.A, 0, size_t(n) * n * sizeof(float)));
  CHECK_CUDA(cudaMemset(d.B, 0, size_t(n) * n * sizeof(float)));
  cudaEvent_t t0, t1;
  CHECK_CUDA(cudaEventCreate(&t0));
  CHECK_CUDA(cudaEventCreate(&t1));
  double gflops[3] = {};
  for (Which w : {Which::Naive, Which::Tiled, Which::Cublas}) {
    launch(w, h, d, n, n, n);  // warm-up
    float best = 1e30f;
    for (int r = 0; r < 5; ++r) {
      CHECK_CUDA(cudaEventRecord(t0));
      launch(w, h, d, n, n, n);
      CHECK_CUDA(cudaEventRecord(t1));
      CHECK_CUDA(cudaEventSynchronize(t1));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, t0, t1));
      best = std::fmin(best, ms);
    }
    gflops[int(w)] = 2.0 * n * n * double(n) / (best * 1e-3) * 1e-9;
    std::printf("  %dx%dx%d fp32, %s: %.3f ms, %.0f GFLOP/s\n", n, n, n, name(w), best,
                gflops[int(w)]);
  }
  std::printf("  the tiled kernel is %.1fx the naive one and %.0f%% of cuBLAS SGEMM\n",
              gflops[1] / gflops[0], 100.0 * gflops[1] / gflops[2]);
  cublasDestroy(h);
  return 0;
}
