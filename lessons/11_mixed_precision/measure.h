// Lesson 11's measurements beside the exercise: what fp16 and bf16 do to a
// real gradient, why the weights need fp32 masters, the 16Ψ accounting, and
// what a 16-bit all-reduce rounds. Each prints what it measured; the README's
// numbers are these lines.
#pragma once
#include <cmath>
#include <cstdio>
#include <vector>

#include "autograd/ops.h"
#include "lessons/11_mixed_precision/fp16_run.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "tensor/dtype.h"
#include "tensor/factory.h"
#include "tensor/random.h"

namespace lesson11 {

using namespace ms;

// Smallest normal: fp16 2^-14, bf16 2^-126 (f32's). Below it a value is
// subnormal (fewer significant bits, down to 1) or, below half the smallest
// subnormal (fp16 2^-25), zero.
struct Fate {
  double zero = 0, subnormal = 0, inf = 0;  // fractions of the nonzero inputs
};
inline Fate fate(const std::vector<double>& values, DType dtype, double mul = 1) {
  const double min_normal = dtype == DType::F16 ? std::ldexp(1.0, -14) : std::ldexp(1.0, -126);
  Fate f;
  int64_t n = 0;
  for (double v : values) {
    if (v == 0) continue;
    ++n;
    const float x = float(v * mul);
    const double r = dtype == DType::F16 ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
    if (r == 0)
      f.zero += 1;
    else if (std::isinf(r))
      f.inf += 1;
    else if (std::fabs(r) < min_normal)
      f.subnormal += 1;
  }
  if (n) f.zero /= double(n), f.subnormal /= double(n), f.inf /= double(n);
  return f;
}

inline void print_fate(const char* what, const std::vector<double>& v, double mul = 1) {
  const Fate h = fate(v, DType::F16, mul), b = fate(v, DType::BF16, mul);
  std::printf(
      "    %-44s fp16: %5.1f%% zero, %5.1f%% subnormal, %4.1f%% inf | bf16: %4.1f%% zero, "
      "%4.1f%% subnormal\n",
      what, 100 * h.zero, 100 * h.subnormal, 100 * h.inf, 100 * b.zero, 100 * b.subnormal);
}

// 1. A real gradient, computed in f32 with the library, then rounded.
inline void measure_gpt_gradient() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = 64, c.block_size = 64;
  GPT gpt(c, 1);
  const TokenData data = TokenData::load("data/tinyshakespeare.txt");
  const Batch b = data.train_batch(0, 0, 1, 8, 64);  // 512 tokens
  // The logits' gradient, (B·T, V): a per-token activation gradient, 1/(B·T) each.
  Tensor logits = detach(gpt.forward(b.x));
  logits.set_requires_grad(true);
  cross_entropy(reshape(logits, {-1, c.vocab_size}), reshape(b.y, {-1})).backward();
  std::vector<double> weights;
  gpt.loss(b.x, b.y).backward();
  for (const Tensor& p : gpt.parameters())
    for (double v : p.grad().to_vector()) weights.push_back(v);
  std::printf(
      "  a real gradient: GPT (%s, Ψ = %lld), one Shakespeare batch of 8 x 64 tokens, "
      "computed in f32, rounded with to():\n",
      c.describe().c_str(), (long long)gpt.num_parameters());
  const std::vector<double> dlogits = logits.grad().to_vector();
  print_fate("dL/dlogits (B·T·V values), 512 tokens", dlogits);
  print_fate("dL/dlogits if the batch were 0.5M tokens", dlogits, 1.0 / 1024);
  print_fate("  ... and the loss scaled by 2^16", dlogits, 65536.0 / 1024);
  print_fate("weight gradients", weights);
  print_fate("weight gradients / gas, gas = 64", weights, 1.0 / 64);
  print_fate("weight gradients x 2^32 (a scale too high)", weights, std::ldexp(1.0, 32));
}

// 2. Why the weights live in fp32: small updates vanish in fp16.
inline void measure_master_weights(const RunLog& run) {
  float w16 = 1.0f, w32 = 1.0f;
  for (int i = 0; i < 1000; ++i) {
    w16 = f16_to_f32(f32_to_f16(w16 + 1e-4f));  // an fp16 weight, updated in place
    w32 += 1e-4f;                               // its fp32 master
  }
  std::printf(
      "  master weights: 1.0 + 1000 updates of 1e-4 -> fp16 weight %.4f (half an fp16 ulp at 1.0 "
      "is 2^-11 = 4.9e-4: every update rounds away), fp32 master %.4f\n",
      w16, w32);
  std::printf(
      "  in the fp16 run above, at step %d: %.1f%% of the weights AdamW moved would not move at "
      "all if the update were added to the fp16 weight instead of the fp32 master\n",
      kProbeStep, 100 * run.lost_updates);
}

// 3. The ZeRO paper's 16Ψ, measured on the run's own tensors.
inline void measure_bytes(const RunLog& run) {
  const double psi = double(run.num_params);
  std::printf(
      "  model states of the fp16 run (Ψ = %lld): fp16 weights %zu B (%.0fΨ), fp16 gradients %zu "
      "B (%.0fΨ), fp32 masters %zu B (%.0fΨ), AdamW m and v %zu B (%.0fΨ): %.0fΨ in all\n",
      (long long)run.num_params, run.bytes_params16, run.bytes_params16 / psi, run.bytes_grads16,
      run.bytes_grads16 / psi, run.bytes_master, run.bytes_master / psi, run.bytes_optimizer,
      run.bytes_optimizer / psi,
      (run.bytes_params16 + run.bytes_grads16 + run.bytes_master + run.bytes_optimizer) / psi);
  const double P = 7.5e9, D = 64, K = 12;
  std::printf(
      "  per GPU, the ZeRO paper's 7.5B model on D = 64: stage 0 (2+2+K)Ψ = %.1f GB, stage 1 "
      "2Ψ+2Ψ+KΨ/D = %.1f GB, stage 2 2Ψ+(2+K)Ψ/D = %.1f GB, stage 3 (2+2+K)Ψ/D = %.2f GB\n",
      (2 + 2 + K) * P / 1e9, (4 + K / D) * P / 1e9, (2 + (2 + K) / D) * P / 1e9,
      (2 + 2 + K) * P / D / 1e9);
}

// 4. What a 16-bit all-reduce rounds. D ranks' gradients summed around a ring
// the way NCCL's ring reduces a bf16 buffer — in bf16, one rounding per hop —
// against the library's rule (parallel/comm/ring.cpp: convert to f32, reduce,
// round once), both against the exact sum.
inline void measure_reduction_rounding() {
  const int D = 16;
  const int64_t n = 1 << 16;
  Generator gen(3);
  std::vector<std::vector<float>> g(D, std::vector<float>(n));
  for (int64_t j = 0; j < n; ++j) {
    const double common = gen.normal() * 1e-3;  // the signal the ranks share
    for (int r = 0; r < D; ++r) g[r][j] = float(common + gen.normal() * 1e-3);
  }
  for (DType dt : {DType::BF16, DType::F16}) {
    auto round = [dt](double x) {
      return dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(float(x)))
                               : f16_to_f32(f32_to_f16(float(x)));
    };
    double err_hop = 0, err_once = 0, norm = 0;
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0;
      float hop = round(g[0][j]), once = 0;
      for (int r = 0; r < D; ++r) exact += double(round(g[r][j]));  // the 16-bit inputs, summed
      for (int r = 1; r < D; ++r) hop = round(double(hop) + round(g[r][j]));
      for (int r = 0; r < D; ++r) once += round(g[r][j]);
      once = round(once);  // f32 accumulator, one rounding
      err_hop += (hop - exact) * (hop - exact);
      err_once += (once - exact) * (once - exact);
      norm += exact * exact;
    }
    std::printf(
        "  all-reduce of %d ranks' %s gradients (%lld values): relative RMS error %.2e with a "
        "rounding at each of the %d hops, %.2e reduced in f32 and rounded once\n",
        D, dtype_name(dt), (long long)n, std::sqrt(err_hop / norm), D - 1,
        std::sqrt(err_once / norm));
  }
}

}  // namespace lesson11
