// Lesson 10, after the groups pass: what each dimension of the mesh moves,
// measured on the learner's own communicators. One representative op per
// dimension, each read from that group's ledger (parallel/comm/ledger.h):
//   tp: an all-reduce of one activation (B, T, C) — Megatron's f or g;
//   pp: stage 0 sends an activation (B, T, C) to stage 1, which sends its
//       gradient back — one micro-batch across one stage boundary;
//   dp: an all-reduce of this rank's gradients (its tp shard of the blocks on
//       its pp stage) — once per step.
// Printed per rank beside the formulas, then multiplied out to one training
// step (the op counts per step are Megatron's, Narayanan et al. 2021 §3).
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "lessons/10_3d_parallel/lesson.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/ledger.h"
#include "tensor/factory.h"

namespace lesson10 {

using namespace ms;

struct Layout {
  int tp, dp, pp;
  int world() const { return tp * dp * pp; }
  std::string str() const { return str_cat("tp ", tp, " × dp ", dp, " × pp ", pp); }
};

// A small GPT-2 stack: kLayers blocks of width kC, split over the pp stages;
// micro-batches of kB × kT tokens, kMicro of them per step. Embeddings left out.
constexpr int64_t kB = 4, kT = 32, kC = 64, kLayers = 4, kMicro = 4;

// One GPT-2 block's parameters on one tp rank: the four matrices and their
// column biases are split over tp (12C² + 7C), the LayerNorms and the two
// row-parallel biases are replicated (6C) — lesson 08.
inline int64_t block_params_per_tp_rank(int64_t c, int t) {
  return (12 * c * c + 7 * c) / t + 6 * c;
}

inline bool measure_traffic(Communicator& world, const Layout& l) {
  const int t = l.tp, d = l.dp, p = l.pp;
  Communicator tp = split_group(world, t, d, p, Dim::TP);
  Communicator dp = split_group(world, t, d, p, Dim::DP);
  Communicator pp = split_group(world, t, d, p, Dim::PP);
  const int64_t act = kB * kT * kC;  // one (B, T, C) activation, floats
  const int64_t layers_here = kLayers / p;
  const int64_t psi = layers_here * block_params_per_tp_rank(kC, t);  // this rank's gradients

  Tensor x = full({kB, kT, kC}, 1.0);  // (B, T, C)
  Traffic t0 = tp.traffic();
  tp.all_reduce(x, ReduceOp::Sum);
  const Traffic tp_moved = tp.traffic() - t0;

  Tensor a = full({kB, kT, kC}, 1.0);  // (B, T, C): the activation, then its gradient
  t0 = pp.traffic();
  for (int s = 0; s + 1 < p; ++s) {  // forward across each boundary, then backward
    if (pp.rank() == s) pp.send(a, s + 1);
    if (pp.rank() == s + 1) pp.recv(a, s);
  }
  for (int s = p - 1; s > 0; --s) {
    if (pp.rank() == s) pp.send(a, s - 1);
    if (pp.rank() == s - 1) pp.recv(a, s);
  }
  const Traffic pp_moved = pp.traffic() - t0;

  Tensor g = full({psi}, 1.0);  // [Ψ_rank] flat gradients
  t0 = dp.traffic();
  dp.all_reduce(g, ReduceOp::Avg);
  const Traffic dp_moved = dp.traffic() - t0;

  const std::vector<Traffic> tps = gather_traffic(world, tp_moved),
                             pps = gather_traffic(world, pp_moved),
                             dps = gather_traffic(world, dp_moved);
  const int64_t tp_f = 2 * (t - 1) * (act / t) * 4, dp_f = 2 * (d - 1) * psi / d * 4,
                pp_f = act * 4;
  bool ok = true;
  if (world.rank() == 0) {
    std::printf(
        "\nWhat each dimension moves, measured on your communicators (%s; B·T·C = %lld x %lld x "
        "%lld; a %lld-block GPT-2 stack, %lld blocks per stage):\n",
        l.str().c_str(), (long long)kB, (long long)kT, (long long)kC, (long long)kLayers,
        (long long)layers_here);
    for (int r = 0; r < world.size(); ++r) {
      const MeshCoord c = coord_of(r, t, d, p);
      const int64_t tp_s = tps[size_t(r)].total().sent, dp_s = dps[size_t(r)].total().sent;
      const OpTraffic &snd = pps[size_t(r)][CommOp::Send], &rcv = pps[size_t(r)][CommOp::Recv];
      std::printf(
          "  rank %d (tp %d, dp %d, pp %d): tp all_reduce sent %lld B (ring-model) | pp send %lld "
          "B, recv %lld B | dp all_reduce sent %lld B (ring-model)\n",
          r, c.tp, c.dp, c.pp, (long long)tp_s, (long long)snd.sent, (long long)rcv.received,
          (long long)dp_s);
      // Every stage boundary moves one activation forward and one gradient back.
      const int64_t links = (c.pp > 0) + (c.pp + 1 < p);
      ok = ok && tp_s == tp_f && dp_s == dp_f && snd.sent == links * pp_f &&
           rcv.received == links * pp_f;
    }
    std::printf(
        "  formula: tp all-reduce of B·T·C = %lld floats: 2(t-1)/t·%lld·4 = %lld B | pp: one "
        "(B, T, C) = %lld B each way across a stage boundary | dp all-reduce of this rank's "
        "gradients Ψ = %lld x ((12C²+7C)/t + 6C) = %lld floats: 2(d-1)/d·Ψ·4 = %lld B\n",
        (long long)act, (long long)act, (long long)tp_f, (long long)pp_f, (long long)layers_here,
        (long long)psi, (long long)dp_f);
    std::printf("%s: measured bytes equal the formulas on every rank\n", ok ? "PASS" : "FAIL");
    if (!ok)
      ms::lesson::record_verdict(
          "FAIL: the bytes measured on your communicators differ from the formulas (the rank "
          "lines above)\n");
    // One step = kMicro micro-batches: 4 tp all-reduces per block per micro-batch
    // (f and g of attention and MLP, forward and backward), one activation and
    // one gradient per boundary per micro-batch, one dp all-reduce.
    const int64_t tp_ops = 4 * layers_here * kMicro;
    const int64_t tp_step = tps[0].total().sent * tp_ops,
                  pp_step = pps[0][CommOp::Send].sent * kMicro, dp_step = dps[0].total().sent;
    std::printf(
        "  one step of %lld micro-batches, rank 0 (measured bytes per op x ops per step): tp "
        "%lld all-reduces (4 per block per micro-batch) = %lld B; pp %lld activations sent and "
        "%lld gradients received = %lld B each way; dp 1 all-reduce = %lld B.\n"
        "  tp moves %.1fx dp's bytes, and each of its %lld all-reduces holds up the next GEMM: "
        "tp inside a node (NVLink); pp's point-to-point messages and dp's one all-reduce per "
        "step (overlapped with the backward) can cross nodes.\n",
        (long long)kMicro, (long long)tp_ops, (long long)tp_step, (long long)kMicro,
        (long long)kMicro, (long long)pp_step, (long long)dp_step,
        double(tp_step) / double(dp_step), (long long)tp_ops);
    std::printf(
        "  batch (formula): micro-batch %lld sequences x %lld micro-batches x dp %d = %lld "
        "sequences per step; the t·p = %d ranks of one replica all work on the same %lld.\n",
        (long long)kB, (long long)kMicro, d, (long long)(kB * kMicro * d), t * p,
        (long long)(kB * kMicro));
  }
  std::fflush(stdout);
  Tensor v = from_vector(std::vector<double>{ok ? 1.0 : 0.0}, {1}, DType::I32);
  world.broadcast(v, 0);
  return v.to_vector()[0] != 0;
}

}  // namespace lesson10
