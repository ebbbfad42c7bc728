// Lesson 17: one GPT-2 block run twice on the same weights and input — on one
// process, and at tp = 2 with sequence parallelism, built from parallel/tp's
// mappings exactly as TpBlock::forward runs it (parallel/tp/tp_gpt.cpp; the
// column and row layers of parallel/tp/linear.h opened up, so that the
// tensors between their collectives can be looked at) — keeping every named
// tensor of lesson.h for the checker to compare. f64 throughout: the two runs
// add in different orders, and f64 leaves their difference at ~1e-15.
#pragma once
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "lessons/17_testing_parallelism/lesson.h"
#include "parallel/comm/communicator.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/mappings.h"
#include "parallel/tp/shard.h"
#include "tensor/factory.h"

namespace lesson17 {

using ms::Tensor;
constexpr int64_t B = 2, T = 8, C = 16, H = 4;

using Tensors = std::map<BlockTensor, Tensor>;

// The serial block's parameters, by Hugging Face name (shard.h cuts them by
// that name), the same on every rank: one seed.
struct Weights {
  std::map<std::string, Tensor> by_name;
  Tensor x, dout;  // the block's input (B, T, C); dL/d(output) (B, T, C)
};

inline Weights make_weights() {
  ms::Generator gen(17);
  auto rnd = [&gen](const ms::Shape& s, double mean, double std) {
    return ms::randn(s, gen, mean, std, ms::DType::F64);
  };
  Weights w;
  w.by_name = {
      {"ln_1.weight", rnd({C}, 1, 0.1)},
      {"ln_1.bias", rnd({C}, 0, 0.1)},
      {"attn.c_attn.weight", rnd({C, 3 * C}, 0, 0.3)},
      {"attn.c_attn.bias", rnd({3 * C}, 0, 0.1)},
      {"attn.c_proj.weight", rnd({C, C}, 0, 0.3)},
      {"attn.c_proj.bias", rnd({C}, 0, 0.1)},
      {"ln_2.weight", rnd({C}, 1, 0.1)},
      {"ln_2.bias", rnd({C}, 0, 0.1)},
      {"mlp.c_fc.weight", rnd({C, 4 * C}, 0, 0.3)},
      {"mlp.c_fc.bias", rnd({4 * C}, 0, 0.1)},
      {"mlp.c_proj.weight", rnd({4 * C, C}, 0, 0.2)},
      {"mlp.c_proj.bias", rnd({C}, 0, 0.1)},
  };
  w.x = rnd({B, T, C}, 0, 1);
  w.dout = rnd({B, T, C}, 0, 1);
  return w;
}

inline Tensor leaf(const Tensor& t) {
  Tensor c = ms::clone(ms::detach(t));
  c.set_requires_grad(true);
  return c;
}

// One process: the serial block (nn/gpt.h Block), forward and backward of
// L = Σ output ∘ dout. The row layers' GEMMs are kept apart from their bias,
// to set beside the tp ranks' partial sums.
inline Tensors run_one_process(const Weights& w) {
  std::map<std::string, Tensor> p;
  for (const auto& [name, t] : w.by_name) p[name] = leaf(t);
  Tensors s;
  s[BlockTensor::Input] = w.x;
  s[BlockTensor::Ln1Out] = ms::layernorm(w.x, p["ln_1.weight"], p["ln_1.bias"]);  // (B, T, C)
  s[BlockTensor::CAttnInput] = s[BlockTensor::Ln1Out];
  s[BlockTensor::CAttnOut] = ms::linear(s[BlockTensor::Ln1Out], p["attn.c_attn.weight"],
                                        p["attn.c_attn.bias"]);                 // (B, T, 3C)
  s[BlockTensor::AttnOut] = ms::causal_attention(s[BlockTensor::CAttnOut], H);  // (B, T, C)
  s[BlockTensor::AttnProjPartial] = ms::matmul(s[BlockTensor::AttnOut], p["attn.c_proj.weight"]);
  s[BlockTensor::AttnProjReduced] = s[BlockTensor::AttnProjPartial] + p["attn.c_proj.bias"];
  s[BlockTensor::Residual1] = w.x + s[BlockTensor::AttnProjReduced];
  s[BlockTensor::Ln2Out] =
      ms::layernorm(s[BlockTensor::Residual1], p["ln_2.weight"], p["ln_2.bias"]);
  s[BlockTensor::FcOut] = ms::linear(s[BlockTensor::Ln2Out], p["mlp.c_fc.weight"],
                                     p["mlp.c_fc.bias"]);  // (B, T, 4C)
  s[BlockTensor::GeluOut] = ms::gelu(s[BlockTensor::FcOut]);
  s[BlockTensor::MlpProjPartial] = ms::matmul(s[BlockTensor::GeluOut], p["mlp.c_proj.weight"]);
  s[BlockTensor::MlpProjReduced] = s[BlockTensor::MlpProjPartial] + p["mlp.c_proj.bias"];
  s[BlockTensor::Output] = s[BlockTensor::Residual1] + s[BlockTensor::MlpProjReduced];
  ms::sum(s[BlockTensor::Output] * w.dout).backward();
  s[BlockTensor::CAttnWeight] = w.by_name.at("attn.c_attn.weight");
  s[BlockTensor::CAttnBias] = w.by_name.at("attn.c_attn.bias");
  s[BlockTensor::AttnProjWeight] = w.by_name.at("attn.c_proj.weight");
  s[BlockTensor::AttnProjBias] = w.by_name.at("attn.c_proj.bias");
  s[BlockTensor::Ln1Weight] = w.by_name.at("ln_1.weight");
  s[BlockTensor::CAttnWeightGrad] = p["attn.c_attn.weight"].grad();
  s[BlockTensor::AttnProjWeightGrad] = p["attn.c_proj.weight"].grad();
  s[BlockTensor::AttnProjBiasGrad] = p["attn.c_proj.bias"].grad();
  s[BlockTensor::Ln1WeightGrad] = p["ln_1.weight"].grad();
  return s;
}

// This tp rank's block, Megatron's tp + SP recipe (Korthikanti et al. 2022,
// Fig. 5): the block's input is this rank's T/t positions; before each
// column layer an all-gather over T (SP's f), after each row layer a
// reduce-scatter over T (SP's g) and then the bias, once. Forward and
// backward of L = Σ output ∘ dout over this rank's positions (the serial L is
// the sum of the ranks' L).
inline Tensors run_tp_sp(const Weights& w, ms::Communicator& tp) {
  const int t = tp.size(), r = tp.rank();
  const int64_t n = T / t;
  std::map<std::string, Tensor> p;
  for (const auto& [name, full] : w.by_name)
    p[name] = leaf(ms::shard_param(full, ms::tp_split_of(name), r, t, H, name));
  const Tensor x = ms::contiguous(ms::narrow(w.x, 1, r * n, n));        // (B, T/t, C)
  const Tensor dout = ms::contiguous(ms::narrow(w.dout, 1, r * n, n));  // (B, T/t, C)
  Tensors s;
  s[BlockTensor::Input] = x;
  s[BlockTensor::Ln1Out] = ms::layernorm(x, p["ln_1.weight"], p["ln_1.bias"]);  // (B, T/t, C)
  s[BlockTensor::CAttnInput] =
      ms::gather_from_sequence_parallel_region(s[BlockTensor::Ln1Out], tp);  // (B, T, C)
  s[BlockTensor::CAttnOut] = ms::linear(s[BlockTensor::CAttnInput], p["attn.c_attn.weight"],
                                        p["attn.c_attn.bias"]);                     // (B, T, 3C/t)
  s[BlockTensor::AttnOut] = ms::causal_attention(s[BlockTensor::CAttnOut], H / t);  // (B, T, C/t)
  s[BlockTensor::AttnProjPartial] =
      ms::matmul(s[BlockTensor::AttnOut], p["attn.c_proj.weight"]);  // (B, T, C)
  s[BlockTensor::AttnProjReduced] =
      ms::reduce_scatter_to_sequence_parallel_region(s[BlockTensor::AttnProjPartial], tp) +
      p["attn.c_proj.bias"];  // (B, T/t, C)
  s[BlockTensor::Residual1] = x + s[BlockTensor::AttnProjReduced];
  s[BlockTensor::Ln2Out] =
      ms::layernorm(s[BlockTensor::Residual1], p["ln_2.weight"], p["ln_2.bias"]);
  s[BlockTensor::FcOut] =
      ms::linear(ms::gather_from_sequence_parallel_region(s[BlockTensor::Ln2Out], tp),
                 p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]);  // (B, T, 4C/t)
  s[BlockTensor::GeluOut] = ms::gelu(s[BlockTensor::FcOut]);
  s[BlockTensor::MlpProjPartial] = ms::matmul(s[BlockTensor::GeluOut], p["mlp.c_proj.weight"]);
  s[BlockTensor::MlpProjReduced] =
      ms::reduce_scatter_to_sequence_parallel_region(s[BlockTensor::MlpProjPartial], tp) +
      p["mlp.c_proj.bias"];  // (B, T/t, C)
  s[BlockTensor::Output] = s[BlockTensor::Residual1] + s[BlockTensor::MlpProjReduced];
  ms::sum(s[BlockTensor::Output] * dout).backward();
  s[BlockTensor::CAttnWeight] = ms::detach(p["attn.c_attn.weight"]);
  s[BlockTensor::CAttnBias] = ms::detach(p["attn.c_attn.bias"]);
  s[BlockTensor::AttnProjWeight] = ms::detach(p["attn.c_proj.weight"]);
  s[BlockTensor::AttnProjBias] = ms::detach(p["attn.c_proj.bias"]);
  s[BlockTensor::Ln1Weight] = ms::detach(p["ln_1.weight"]);
  s[BlockTensor::CAttnWeightGrad] = p["attn.c_attn.weight"].grad();
  s[BlockTensor::AttnProjWeightGrad] = p["attn.c_proj.weight"].grad();
  s[BlockTensor::AttnProjBiasGrad] = p["attn.c_proj.bias"].grad();
  s[BlockTensor::Ln1WeightGrad] = p["ln_1.weight"].grad();

  // The same block through the library's own layers (what TpBlock calls):
  // the opened-up recipe above must give the library's output, or this
  // checker would be grading against a block the framework does not run.
  const ms::ColumnParallelOptions col{.sequence_parallel = true};
  const ms::RowParallelOptions row{.sequence_parallel = true};
  auto d = [&p](const char* name) { return ms::detach(p[name]); };
  Tensor h1 =
      x + ms::row_parallel_linear(
              ms::causal_attention(ms::column_parallel_linear(
                                       ms::layernorm(x, d("ln_1.weight"), d("ln_1.bias")),
                                       d("attn.c_attn.weight"), d("attn.c_attn.bias"), tp, col),
                                   H / t),
              d("attn.c_proj.weight"), d("attn.c_proj.bias"), tp, row);
  Tensor out = h1 + ms::row_parallel_linear(ms::gelu(ms::column_parallel_linear(
                                                ms::layernorm(h1, d("ln_2.weight"), d("ln_2.bias")),
                                                d("mlp.c_fc.weight"), d("mlp.c_fc.bias"), tp, col)),
                                            d("mlp.c_proj.weight"), d("mlp.c_proj.bias"), tp, row);
  const std::vector<double> a = ms::detach(s[BlockTensor::Output]).to_vector(), b = out.to_vector();
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
  MS_CHECK(diff < 1e-12,
           "lesson 17 checker: its tp + SP block differs from parallel/tp's "
           "column/row layers by ",
           diff, " (a bug in block_runs.h)");
  return s;
}

// One process's q|k|v columns (last dim 3C) regrouped as the tp ranks hold
// them: rank 0's heads' q, k, v, then rank 1's (parallel/tp/shard.h, Qkv).
inline Tensor qkv_by_heads(const Tensor& full, int t) {
  const int64_t last = full.dim() - 1, c = full.shape()[last] / 3;
  std::vector<Tensor> parts;
  for (int r = 0; r < t; ++r)
    for (int i = 0; i < 3; ++i) parts.push_back(ms::narrow(full, last, i * c + r * c / t, c / t));
  return ms::contiguous(ms::cat(parts, last));
}

}  // namespace lesson17
