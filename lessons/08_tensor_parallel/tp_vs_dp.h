// Lesson 08, after the layer passes: why tensor parallelism stays inside a
// node, measured rather than asserted. One GPT-2 block built Megatron-style
// (the library's column-parallel c_attn and c_fc, the learner's row-parallel
// attn.c_proj and mlp.c_proj) runs on t = 2 x d = 2 ranks for two
// micro-batches; the tp group's ledger gives TP's bytes per layer per
// micro-batch (activations, 4 all-reduces), the dp group's gives DP's bytes
// per step (one all-reduce of the gradients), printed per rank beside the
// formulas (Narayanan et al. 2021, §3.2) and the same formulas for a
// GPT-2-small layer.
#pragma once
#include <cstdio>
#include <vector>

#include "autograd/ops.h"
#include "lessons/08_tensor_parallel/lesson.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/ledger.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/shard.h"
#include "tensor/factory.h"
#include "tensor/random.h"

namespace lesson08 {

using namespace ms;

// Every rank builds the same tensors from a seed: a serial reference needs
// no communication.
inline Tensor seeded(const Shape& shape, uint64_t seed, double std = 1.0) {
  Generator gen(seed);
  return randn(shape, gen, 0, std);
}

inline Tensor leaf(const Tensor& t) {
  Tensor c = clone(detach(t));
  c.set_requires_grad(true);
  return c;
}

constexpr int64_t kC = 64, kHeads = 4, kMB = 4, kMT = 32;  // width, heads; micro-batch B, T
constexpr int kMicro = 2;                                  // micro-batches per step

struct Param {
  Tensor value;  // this rank's piece, a leaf
  bool sharded;  // split over tp (else replicated on every tp rank)
};

// One GPT-2 block, x + attn(ln1(x)), then + mlp(ln2(.)), Megatron-style: the
// library's column-parallel c_attn (the q|k|v rule) and c_fc, your
// row-parallel attn.c_proj and mlp.c_proj; LayerNorms and residuals on the
// full (B, T, C), replicated. Each rank's pieces of the serial block.
inline std::vector<Param> block_params(Communicator& tp) {
  const int t = tp.size(), r = tp.rank();
  auto shard = [&](const Tensor& full, TpSplit s, const char* name) {
    return leaf(shard_param(full, s, r, t, kHeads, name));
  };
  const int64_t C = kC;
  return {
      {leaf(add(seeded({C}, 20, 0.1), 1.0)), false},                           // ln1.w
      {leaf(seeded({C}, 21, 0.1)), false},                                     // ln1.b
      {shard(seeded({C, 3 * C}, 22, 0.1), TpSplit::Qkv, "c_attn.w"), true},    // [C, 3C/t]
      {shard(seeded({3 * C}, 23, 0.1), TpSplit::Qkv, "c_attn.b"), true},       // [3C/t]
      {leaf(row_parallel_shard(seeded({C, C}, 24, 0.1), tp)), true},           // [C/t, C]
      {leaf(seeded({C}, 25, 0.1)), false},                                     // c_proj.b
      {leaf(add(seeded({C}, 26, 0.1), 1.0)), false},                           // ln2.w
      {leaf(seeded({C}, 27, 0.1)), false},                                     // ln2.b
      {shard(seeded({C, 4 * C}, 28, 0.1), TpSplit::Columns, "c_fc.w"), true},  // [C, 4C/t]
      {shard(seeded({4 * C}, 29, 0.1), TpSplit::Columns, "c_fc.b"), true},     // [4C/t]
      {leaf(row_parallel_shard(seeded({4 * C, C}, 30, 0.1), tp)), true},       // [4C/t, C]
      {leaf(seeded({C}, 31, 0.1)), false},                                     // c_proj.b
  };
}

inline Tensor block_forward(const std::vector<Param>& p, const Tensor& x, Communicator& tp) {
  auto v = [&](int i) { return p[size_t(i)].value; };
  Tensor qkv = column_parallel_linear(layernorm(x, v(0), v(1)), v(2), v(3), tp);  // (B, T, 3C/t)
  Tensor a = causal_attention(qkv, kHeads / tp.size());                           // (B, T, C/t)
  Tensor h = add(x, my_row_parallel_linear(tp, a, v(4), v(5)));                   // (B, T, C)
  Tensor f =
      gelu(column_parallel_linear(layernorm(h, v(6), v(7)), v(8), v(9), tp));  // (B, T, 4C/t)
  return add(h, my_row_parallel_linear(tp, f, v(10), v(11)));
}

inline void tp_vs_dp(Communicator& world) {
  const int t = 2, d = world.size() / t;
  // Megatron's order: tp fastest. tp groups {0,1} {2,3}; dp groups {0,2} {1,3}.
  Communicator tp = world.split(world.rank() / t, world.rank() % t);
  Communicator dp = world.split(world.rank() % t, world.rank() / t);
  std::vector<Param> params = block_params(tp);

  Traffic tp_moved;
  for (int m = 0; m < kMicro; ++m) {
    // The tp ranks of a replica read the SAME micro-batch; replicas differ.
    // x requires grad, as a layer's input does inside a model: f's backward
    // all-reduce exists only where a gradient flows back to its input.
    const uint64_t s = 100 + 10 * dp.rank() + m;
    Tensor x = leaf(seeded({kMB, kMT, kC}, s)), g = seeded({kMB, kMT, kC}, s + 5);
    const Traffic t0 = tp.traffic();
    sum(block_forward(params, x, tp) * g).backward();  // gradients accumulate
    tp_moved += tp.traffic() - t0;
  }
  // Data parallelism: once per step, one all-reduce of all of this rank's
  // gradients (its shards and the replicated LayerNorms and c_proj biases).
  std::vector<Tensor> grads;
  int64_t sharded = 0, replicated = 0;
  for (const Param& p : params) {
    grads.push_back(reshape(p.value.grad(), {-1}));
    (p.sharded ? sharded : replicated) += p.value.numel();
  }
  Tensor flat = cat(grads, 0);
  const int64_t n = flat.numel();
  const Traffic t0 = dp.traffic();
  dp.all_reduce(flat, ReduceOp::Avg);
  const Traffic dp_moved = dp.traffic() - t0;

  if (world.rank() == 0)
    std::printf(
        "\nWhy tensor parallelism stays inside a node, measured. One GPT-2 block (C = %lld, %lld "
        "heads: the library's column-parallel c_attn and c_fc, your row-parallel attn.c_proj and "
        "mlp.c_proj) on t = %d x d = %d ranks (tp groups {0,1} {2,3}, dp groups {0,2} {1,3}), "
        "micro-batches of B·T = %lld x %lld tokens, %d micro-batches per step.\n"
        "  tensor parallel, the whole step (forward and backward of %d micro-batches):\n",
        (long long)kC, (long long)kHeads, t, d, (long long)kMB, (long long)kMT, kMicro, kMicro);
  std::vector<Traffic> tp_all = lesson::print_traffic_per_rank(world, tp_moved);
  if (world.rank() == 0)
    std::printf(
        "  data parallel, the whole step (one all-reduce of this rank's %lld gradient values, "
        "%lld of them its shards, after the last micro-batch):\n",
        (long long)n, (long long)sharded);
  std::vector<Traffic> dp_all = lesson::print_traffic_per_rank(world, dp_moved);
  if (world.rank() != 0) return;
  const int64_t act = kMB * kMT * kC;  // one (B, T, C) activation
  const int64_t tp_mb = tp_all[0].total().sent / kMicro, dp_step = dp_all[0].total().sent;
  std::printf(
      "  measured, rank 0: TP %lld B per layer per micro-batch (%lld per step), DP %lld B per "
      "step: TP moved %.1fx DP's bytes.\n"
      "  formula: TP = 4 all-reduces (f and g of attention and of the MLP) x 2(t-1)/t x B·T·C·4 "
      "= %lld B per layer per micro-batch (Narayanan et al. 2021: 8bsh(t-1)/t values); DP = "
      "2(d-1)/d x %lld x 4 = %lld B per step.\n",
      (long long)tp_mb, (long long)(tp_mb * kMicro), (long long)dp_step,
      double(tp_mb * kMicro) / double(dp_step), (long long)(4 * 2 * (t - 1) * act / t * 4),
      (long long)n, (long long)(2 * (d - 1) * n / d * 4));
  // The same two formulas for GPT-2 small (C = 768, 12 heads) at one
  // micro-batch of 8 x 1024 tokens, t = d = 4: activations grow with the
  // tokens, weights not. t = 4 because the heads split whole (n_head % t == 0,
  // the rule the library enforces): 12 heads allow t = 1, 2, 3, 4, 6, 12.
  constexpr int64_t kHeads = 12, kT = 4, kD = 4;
  static_assert(kHeads % kT == 0, "GPT-2 small's heads must split whole over t");
  const double C = 768, tokens = 8 * 1024, tq = kT, dq = kD;
  const double tp_bytes = 4 * 2 * (tq - 1) / tq * tokens * C * 4,
               dp_bytes = 2 * (dq - 1) / dq * ((12 * C * C + 7 * C) / tq + 6 * C) * 4;
  std::printf(
      "  formula, one GPT-2-small layer (C = 768), micro-batch 8 x 1024 tokens, t = d = 4: TP "
      "%.0f MB per micro-batch, DP %.1f MB per step (%.0fx, before multiplying by the "
      "micro-batches per step). And each TP all-reduce sits on the critical path — the next "
      "GEMM waits for it — while DP's overlaps the backward.\n",
      tp_bytes / 1e6, dp_bytes / 1e6, tp_bytes / dp_bytes);
}

}  // namespace lesson08
