// GPU kernel timings at GPT-2 124M's shapes (B = 8, T = 1024, C = 768, NH = 12,
// V = 50257): every GEMM of a layer in each precision (the hand-written tiled
// kernel and cuBLAS fp32 / tf32 / bf16), attention, LayerNorm, GELU, the
// classifier (fused vs. cross-entropy forward + backward) and AdamW.
//
// One line of JSON per measurement on stdout, so bench/gpu/torch_peer.py can
// run this binary, time the same ops in PyTorch and print the ratios side by
// side. Achieved TFLOP/s and GB/s are printed against the H100/H200 SXM
// datasheet dense peaks (FP32 67, TF32 494, BF16 989 TFLOP/s; HBM 3.35 TB/s on
// an H100, 4.8 TB/s on an H200, picked by the device's name).
//
//   bench_gpu_kernels [--quick]     (--quick: fewer iterations, smaller B)
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tensor/cuda/kernels.h"
#include "tensor/cuda/runtime.h"

namespace {

#define CK(expr)                                                                                 \
  do {                                                                                           \
    cudaError_t e_ = (expr);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

// The device's main stream: every launch, copy and timing event goes there
// (the stream rule, docs/architecture.md "Streams"). Set in main().
cudaStream_t g_stream = nullptr;

constexpr double kPeakFp32 = 67e12, kPeakTf32 = 494e12, kPeakBf16 = 989e12;
double kPeakBw = 4.8e12;  // main() sets 3.35e12 for an H100

template <typename T>
T* dev_random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::vector<T> h(n);
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : h) {
    s = s * 1664525u + 1013904223u;  // an LCG is plenty for timing inputs
    x = T((float(s >> 8) / float(1 << 24) * 2.0f - 1.0f) * scale);
  }
  T* d = nullptr;
  CK(cudaMalloc(&d, n * sizeof(T)));
  CK(cudaMemcpyAsync(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice, g_stream));
  CK(cudaStreamSynchronize(g_stream));
  return d;
}

template <typename T>
T* dev_zeros(size_t n) {
  T* d = nullptr;
  CK(cudaMalloc(&d, n * sizeof(T)));
  CK(cudaMemsetAsync(d, 0, n * sizeof(T), g_stream));
  return d;
}

// Median-free and simple: warm up, then time `iters` back-to-back launches
// with events and report the mean (the launches queue, so launch overhead
// hides behind the previous kernel as it does in a training step).
double time_ms(const std::function<void()>& f, int iters) {
  for (int i = 0; i < 2; ++i) f();
  CK(cudaStreamSynchronize(g_stream));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  CK(cudaEventRecord(a, g_stream));
  for (int i = 0; i < iters; ++i) f();
  CK(cudaEventRecord(b, g_stream));
  CK(cudaEventSynchronize(b));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return double(ms) / iters;
}

void report(const std::string& op, const std::string& variant, double ms, double flops,
            double bytes, double peak) {
  const double tflops = flops > 0 ? flops / (ms * 1e-3) / 1e12 : 0;
  const double gbps = bytes > 0 ? bytes / (ms * 1e-3) / 1e9 : 0;
  const double frac = flops > 0 ? tflops * 1e12 / peak : gbps * 1e9 / kPeakBw;
  std::printf(
      "{\"op\": \"%s\", \"variant\": \"%s\", \"ms\": %.4f, \"tflops\": %.2f, \"gbps\": %.1f, "
      "\"frac_peak\": %.3f}\n",
      op.c_str(), variant.c_str(), ms, tflops, gbps, frac);
  std::fflush(stdout);
}

struct GemmShape {
  const char* name;
  bool ta, tb;
  int64_t M, N, K;
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "bench_gpu_kernels: no CUDA device; nothing to time\n");
    return 2;
  }
  g_stream = ms::cuda::current_stream();
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::fprintf(stderr, "device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
               prop.multiProcessorCount);
  if (std::strstr(prop.name, "H100") != nullptr) kPeakBw = 3.35e12;
  const int64_t B = quick ? 2 : 8, T = 1024, C = 768, NH = 12, V = 50257, BT = B * T;
  const int iters = quick ? 3 : 20;
  std::printf("{\"config\": {\"B\": %ld, \"T\": %ld, \"C\": %ld, \"NH\": %ld, \"V\": %ld}}\n",
              long(B), long(T), long(C), long(NH), long(V));

  // ---- GEMMs: a GPT-2 block's forward and the weight-gradient form, the LM head ----
  const std::vector<GemmShape> shapes = {
      {"qkv", false, false, BT, 3 * C, C},       {"attn_proj", false, false, BT, C, C},
      {"fc", false, false, BT, 4 * C, C},        {"fc_proj", false, false, BT, C, 4 * C},
      {"fc_dweight", true, false, C, 4 * C, BT}, {"fc_dinp", false, true, BT, C, 4 * C},
      {"lm_head", false, true, BT, V, C}};
  for (const GemmShape& s : shapes) {
    const int64_t rows_a = s.ta ? s.K : s.M, cols_a = s.ta ? s.M : s.K;
    const int64_t rows_b = s.tb ? s.N : s.K, cols_b = s.tb ? s.K : s.N;
    float* A = dev_random<float>(rows_a * cols_a, 1, 0.1f);
    float* Bm = dev_random<float>(rows_b * cols_b, 2, 0.1f);
    float* Cm = dev_zeros<float>(s.M * s.N);
    const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
    using ms::cuda::GemmBackend;
    using ms::cuda::GemmConfig;
    using ms::cuda::GemmMath;
    double cublas_fp32_ms = 0;
    for (GemmConfig cfg : {GemmConfig{GemmBackend::Cublas, GemmMath::FP32},
                           GemmConfig{GemmBackend::Cublas, GemmMath::TF32},
                           GemmConfig{GemmBackend::Cublas, GemmMath::BF16},
                           GemmConfig{GemmBackend::Tiled, GemmMath::FP32}}) {
      const double ms = time_ms(
          [&] {
            ms::cuda::gemm_f32(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A, cols_a, Bm, cols_b, 0.0f, Cm,
                               s.N, cfg, g_stream);
          },
          iters);
      const double peak = cfg.backend == GemmBackend::Tiled || cfg.math == GemmMath::FP32
                              ? kPeakFp32
                          : cfg.math == GemmMath::TF32 ? kPeakTf32
                                                       : kPeakBf16;
      std::string variant = std::string(ms::cuda::gemm_backend_name(cfg.backend)) + "_" +
                            ms::cuda::gemm_math_name(cfg.math);
      report(std::string("gemm_") + s.name, variant, ms, flops, 0, peak);
      if (cfg.backend == GemmBackend::Cublas && cfg.math == GemmMath::FP32) cublas_fp32_ms = ms;
      if (cfg.backend == GemmBackend::Tiled)
        std::printf("{\"op\": \"gemm_%s\", \"tiled_fraction_of_cublas_fp32\": %.3f}\n", s.name,
                    cublas_fp32_ms / ms);
    }
    uint16_t* A16 = dev_random<uint16_t>(rows_a * cols_a, 3);  // bit patterns: timing only
    uint16_t* B16 = dev_random<uint16_t>(rows_b * cols_b, 4);
    uint16_t* C16 = dev_zeros<uint16_t>(s.M * s.N);
    CK(cudaMemsetAsync(A16, 0x3c, rows_a * cols_a * 2,
                       g_stream));  // 0x3c3c: a finite bf16 (~0.0115)
    CK(cudaMemsetAsync(B16, 0x3c, rows_b * cols_b * 2, g_stream));
    const double ms16 = time_ms(
        [&] {
          ms::cuda::gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A16, cols_a, B16, cols_b, 0.0f, C16,
                              s.N, g_stream);
        },
        iters);
    report(std::string("gemm_") + s.name, "cublas_bf16_storage", ms16, flops, 0, kPeakBf16);
    for (float* p : {A, Bm, Cm}) CK(cudaFree(p));
    for (uint16_t* p : {A16, B16, C16}) CK(cudaFree(p));
  }

  // ---- attention (materialized att, as the CPU twin) ----
  {
    float* qkv = dev_random<float>(BT * 3 * C, 5);
    float* out = dev_zeros<float>(BT * C);
    float* att = dev_zeros<float>(B * NH * T * T);
    float* datt = dev_zeros<float>(B * NH * T * T);
    float* dqkv = dev_zeros<float>(BT * 3 * C);
    float* dout = dev_random<float>(BT * C, 6);
    // Causal FLOPs: q·kᵀ and att·v over the lower triangle, 2·2·B·NH·T²/2·hs.
    const double fwd_flops = 2.0 * B * NH * double(T) * T * (C / NH);
    const double ms_f =
        time_ms([&] { ms::cuda::attention_forward(out, att, qkv, B, T, C, NH, g_stream); }, iters);
    report("attention_forward", "ours_fp32", ms_f, fwd_flops, 0, kPeakFp32);
    const double ms_b = time_ms(
        [&] { ms::cuda::attention_backward(dqkv, datt, dout, qkv, att, B, T, C, NH, g_stream); },
        iters);
    report("attention_backward", "ours_fp32", ms_b, 2 * fwd_flops, 0, kPeakFp32);
    for (float* p : {qkv, out, att, datt, dqkv, dout}) CK(cudaFree(p));
  }

  // ---- LayerNorm, GELU: memory-bound, so GB/s is the figure of merit ----
  {
    float* x = dev_random<float>(BT * C, 7);
    float* y = dev_zeros<float>(BT * C);
    float* w = dev_random<float>(C, 8);
    float* b = dev_random<float>(C, 9);
    float* mean = dev_zeros<float>(BT);
    float* rstd = dev_zeros<float>(BT);
    float* dx = dev_zeros<float>(BT * C);
    float* dw = dev_zeros<float>(C);
    float* db = dev_zeros<float>(C);
    const double ms_f = time_ms(
        [&] { ms::cuda::layernorm_forward(y, mean, rstd, x, w, b, BT, C, 1e-5, g_stream); }, iters);
    report("layernorm_forward", "ours_fp32", ms_f, 0, 2.0 * BT * C * 4, 0);
    const double ms_b = time_ms(
        [&] { ms::cuda::layernorm_backward(dx, dw, db, y, x, w, mean, rstd, BT, C, g_stream); },
        iters);
    report("layernorm_backward", "ours_fp32", ms_b, 0, 3.0 * BT * C * 4, 0);
    for (float* p : {x, y, w, b, mean, rstd, dx, dw, db}) CK(cudaFree(p));

    const int64_t n = BT * 4 * C;
    float* g = dev_random<float>(n, 10);
    float* go = dev_zeros<float>(n);
    const double ms_g = time_ms([&] { ms::cuda::gelu_forward(go, g, n, g_stream); }, iters);
    report("gelu_forward", "ours_fp32", ms_g, 0, 2.0 * n * 4, 0);
    for (float* p : {g, go}) CK(cudaFree(p));
  }

  // ---- classifier: fused (one read, one write of the logits) vs. unfused ----
  {
    float* logits = dev_random<float>(BT * V, 11, 4.0f);
    float* dlogits = dev_zeros<float>(BT * V);
    float* lse = dev_zeros<float>(BT);
    float* losses = dev_zeros<float>(BT);
    std::vector<int32_t> ht(BT);
    for (int64_t i = 0; i < BT; ++i) ht[i] = int32_t((i * 7919) % V);
    int32_t* tgt = nullptr;
    CK(cudaMalloc(&tgt, BT * sizeof(int32_t)));
    CK(cudaMemcpyAsync(tgt, ht.data(), BT * sizeof(int32_t), cudaMemcpyHostToDevice, g_stream));
    CK(cudaStreamSynchronize(g_stream));
    const double bytes = double(BT) * V * 4;
    const double ms_u = time_ms(
        [&] {
          ms::cuda::cross_entropy_forward(lse, logits, tgt, BT, V, g_stream);
          ms::cuda::cross_entropy_backward(dlogits, logits, lse, tgt, 1.0, BT, V, g_stream);
        },
        iters);
    report("classifier", "ours_unfused_fwd_bwd", ms_u, 0, 4 * bytes, 0);
    // In place: after the first call the buffer holds gradients, not logits;
    // the work per call is the same, only the values differ.
    const double ms_f = time_ms(
        [&] { ms::cuda::fused_classifier(logits, losses, tgt, 1.0, BT, V, g_stream); }, iters);
    report("classifier", "ours_fused", ms_f, 0, 2 * bytes, 0);
    for (float* p : {logits, dlogits, lse, losses}) CK(cudaFree(p));
    CK(cudaFree(tgt));
  }

  // ---- AdamW over GPT-2 124M's parameter count ----
  {
    const int64_t n = 124439808;
    float* p = dev_random<float>(n, 12);
    float* g = dev_random<float>(n, 13);
    float* m = dev_zeros<float>(n);
    float* v = dev_zeros<float>(n);
    const double ms = time_ms(
        [&] {
          ms::cuda::adamw_update(p, m, v, g, n, 1e-3f, 1 - 1e-4f, 0.9f, 0.999f, 0.1f, 0.001f, 1.0f,
                                 1e-8f, g_stream);
        },
        iters);
    report("adamw", "ours_fp32", ms, 0, 28.0 * n, 0);
    for (float* q : {p, g, m, v}) CK(cudaFree(q));
  }
  return 0;
}
