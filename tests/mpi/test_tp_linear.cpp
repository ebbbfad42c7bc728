// Column- and row-parallel linear (parallel/tp/linear.h) and the sharding
// rules (parallel/tp/shard.h) against the serial layers on the same data, at
// tp = 2 and 4: outputs, input gradients and every weight shard's gradient;
// the MLP and attention sublayers with and without sequence parallelism; the
// classic mistakes (bias on every rank, a plain chunk of c_attn, unsynced
// sequence-parallel grads) shown to be wrong; the ledger's all-reduce count;
// shard → unshard round trips of a whole GPT.
#include "nn/gpt.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/mappings.h"
#include "parallel/tp/sequence_parallel.h"
#include "parallel/tp/shard.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 8, C = 16, H = 4;  // H heads: 2 or 1 per rank
constexpr double kTol = 2e-5;

Tensor shard(const Tensor& full, TpSplit s, Communicator& tp) {
  return leaf(shard_param(full, s, tp.rank(), tp.size(), H, "test"));
}
Tensor seq_slice(const Tensor& full, Communicator& tp) {
  const int64_t n = full.shape()[1] / tp.size();
  return narrow(full, 1, tp.rank() * n, n);
}

}  // namespace

TEST_CASE("tp linear: column- and row-parallel against the serial linear", "[mpi][tp][tp_linear]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Tensor X = seeded({B, T, C}, 1), W = seeded({C, 2 * C}, 2, 0.3), b = seeded({2 * C}, 3),
                 G = seeded({B, T, 2 * C}, 4);
    Tensor x = leaf(X), w = leaf(W), bb = leaf(b);
    Tensor y = linear(x, w, bb);
    sum(y * G).backward();

    // Column: my output features; f's backward sums the input gradients.
    for (bool gather : {false, true}) {
      INFO("gather_output " << gather);
      Tensor xc = leaf(X), wc = shard(W, TpSplit::Columns, tp), bc = shard(b, TpSplit::Columns, tp);
      Tensor yc = column_parallel_linear(xc, wc, bc, tp, {.gather_output = gather});
      Tensor gc = gather ? G : shard_param(G, TpSplit::Columns, tp.rank(), t, H, "G");
      sum(yc * gc).backward();
      CHECK(max_diff(yc, gather ? y : shard_param(y, TpSplit::Columns, tp.rank(), t, H, "y")) <
            kTol);
      CHECK(max_diff(xc.grad(), x.grad()) < kTol);
      CHECK(max_diff(wc.grad(), shard_param(w.grad(), TpSplit::Columns, tp.rank(), t, H, "dW")) <
            kTol);
      CHECK(max_diff(bc.grad(), shard_param(bb.grad(), TpSplit::Columns, tp.rank(), t, H, "db")) <
            kTol);
    }

    // Row: input features split, partial sums all-reduced, bias once.
    for (bool parallel_in : {true, false}) {
      INFO("input_is_parallel " << parallel_in);
      Tensor xr = parallel_in ? shard(X, TpSplit::Columns, tp) : leaf(X);
      Tensor wr = shard(W, TpSplit::Rows, tp), br = leaf(b);
      Tensor yr = row_parallel_linear(xr, wr, br, tp, {.input_is_parallel = parallel_in});
      sum(yr * G).backward();
      CHECK(max_diff(yr, y) < kTol);
      Tensor want_dx =
          parallel_in ? shard_param(x.grad(), TpSplit::Columns, tp.rank(), t, H, "dx") : x.grad();
      CHECK(max_diff(xr.grad(), want_dx) < kTol);
      CHECK(max_diff(wr.grad(), shard_param(w.grad(), TpSplit::Rows, tp.rank(), t, H, "dW")) <
            kTol);
      CHECK(max_diff(br.grad(), bb.grad()) < kTol);  // g's backward is identity: no tp sum
    }

    // The classic mistake: the bias inside the reduction is added t times.
    Tensor xr = shard(X, TpSplit::Columns, tp), wr = shard(W, TpSplit::Rows, tp);
    Tensor wrong = reduce_from_tp_region(linear(xr, wr, b), tp);
    CHECK(max_diff(wrong, y) > 0.5);
    CHECK(max_diff(wrong - y, expand(b * double(t - 1), {B, T, 2 * C})) < kTol);
  }
}

TEST_CASE("tp linear: the MLP (column → GELU → row) with and without sequence parallelism",
          "[mpi][tp][tp_linear]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Tensor X = seeded({B, T, C}, 11), W1 = seeded({C, 4 * C}, 12, 0.3),
                 b1 = seeded({4 * C}, 13), W2 = seeded({4 * C, C}, 14, 0.2), b2 = seeded({C}, 15),
                 lw = seeded({C}, 16), lb = seeded({C}, 17), G = seeded({B, T, C}, 18);
    // The serial pre-LN sublayer: x + c_proj(gelu(c_fc(ln(x)))).
    Tensor x = leaf(X), w1 = leaf(W1), c1 = leaf(b1), w2 = leaf(W2), c2 = leaf(b2), g = leaf(lw),
           be = leaf(lb);
    Tensor y = x + linear(gelu(linear(layernorm(x, g, be), w1, c1)), w2, c2);
    sum(y * G).backward();

    for (int mode : {0, 1, 2}) {  // none, SP, SP re-gathering its input in backward
      const bool sp = mode > 0, regather = mode == 2;
      INFO("sequence_parallel " << sp << ", regather_in_backward " << regather);
      Tensor xs = leaf(sp ? seq_slice(X, tp) : X);  // (B, T/t, C) under SP
      Tensor w1s = shard(W1, TpSplit::Columns, tp), c1s = shard(b1, TpSplit::Columns, tp),
             w2s = shard(W2, TpSplit::Rows, tp), c2s = leaf(b2), gs = leaf(lw), bes = leaf(lb);
      Traffic t0 = tp.traffic();
      Tensor h = column_parallel_linear(
          layernorm(xs, gs, bes), w1s, c1s, tp,
          {.sequence_parallel = sp, .regather_in_backward = regather});  // (B, T, 4C/t)
      Tensor ys = xs + row_parallel_linear(gelu(h), w2s, c2s, tp, {.sequence_parallel = sp});
      Traffic fwd = tp.traffic() - t0;
      sum(ys * (sp ? seq_slice(G, tp) : G)).backward();
      Traffic bwd = tp.traffic() - t0 - fwd;
      // LayerNorm and the c_proj bias saw T/t tokens under SP: partial grads.
      Tensor unsynced = clone(gs.grad());
      if (sp) allreduce_sequence_parallel_grads({gs, bes, c2s}, tp);

      CHECK(max_diff(ys, sp ? seq_slice(y, tp) : y) < kTol);
      CHECK(max_diff(xs.grad(), sp ? seq_slice(x.grad(), tp) : x.grad()) < kTol);
      CHECK(max_diff(w1s.grad(), shard_param(w1.grad(), TpSplit::Columns, tp.rank(), t, H, "")) <
            kTol);
      CHECK(max_diff(c1s.grad(), shard_param(c1.grad(), TpSplit::Columns, tp.rank(), t, H, "")) <
            kTol);
      CHECK(max_diff(w2s.grad(), shard_param(w2.grad(), TpSplit::Rows, tp.rank(), t, H, "")) <
            kTol);
      CHECK(max_diff(c2s.grad(), c2.grad()) < kTol);
      CHECK(max_diff(gs.grad(), g.grad()) < kTol);
      CHECK(max_diff(bes.grad(), be.grad()) < kTol);
      if (sp) CHECK(max_diff(unsynced, g.grad()) > 1e-3);  // without the tp sum: wrong

      // Megatron's count: one all-reduce of B·T·C forward, one backward — or,
      // under SP, an all-gather and a reduce-scatter of the same size each way.
      const int64_t bytes = B * T * C * 4;
      if (!sp) {
        CHECK(fwd.total().calls == 1);
        CHECK(fwd[CommOp::AllReduce].payload == bytes);
        CHECK(bwd.total().calls == 1);
        CHECK(bwd[CommOp::AllReduce].payload == bytes);
      } else {
        CHECK(fwd.total().calls == 2);
        CHECK(fwd[CommOp::AllGather].payload == bytes);
        CHECK(fwd[CommOp::ReduceScatter].payload == bytes);
        // Re-gathering the column layer's input costs one more all-gather.
        CHECK(bwd[CommOp::AllGather].payload == (regather ? 2 : 1) * bytes);
        CHECK(bwd[CommOp::ReduceScatter].payload == bytes);
        CHECK(bwd.total().calls == (regather ? 3 : 2));
      }
    }
  }
}

TEST_CASE("tp linear: attention split by heads; a plain chunk of c_attn is wrong",
          "[mpi][tp][tp_linear]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Tensor X = seeded({B, T, C}, 21), Wa = seeded({C, 3 * C}, 22, 0.3),
                 ba = seeded({3 * C}, 23), Wp = seeded({C, C}, 24, 0.3), bp = seeded({C}, 25),
                 G = seeded({B, T, C}, 26);
    Tensor x = leaf(X), wa = leaf(Wa), a = leaf(ba), wp = leaf(Wp), p = leaf(bp);
    Tensor y = linear(causal_attention(linear(x, wa, a), H), wp, p);
    sum(y * G).backward();

    auto tp_attention = [&](TpSplit qkv_rule, Tensor& xs, Tensor& was, Tensor& as, Tensor& wps) {
      xs = leaf(X);
      was = shard(Wa, qkv_rule, tp);
      as = shard(ba, qkv_rule, tp);
      wps = shard(Wp, TpSplit::Rows, tp);
      Tensor qkv = column_parallel_linear(xs, was, as, tp);  // (B, T, 3C/t): my heads' q|k|v
      return row_parallel_linear(causal_attention(qkv, H / t), wps, leaf(bp), tp);
    };
    Tensor xs, was, as, wps;
    Tensor ys = tp_attention(TpSplit::Qkv, xs, was, as, wps);
    sum(ys * G).backward();
    CHECK(max_diff(ys, y) < kTol);
    CHECK(max_diff(xs.grad(), x.grad()) < kTol);
    CHECK(max_diff(was.grad(), shard_param(wa.grad(), TpSplit::Qkv, tp.rank(), t, H, "")) < kTol);
    CHECK(max_diff(as.grad(), shard_param(a.grad(), TpSplit::Qkv, tp.rank(), t, H, "")) < kTol);
    CHECK(max_diff(wps.grad(), shard_param(wp.grad(), TpSplit::Rows, tp.rank(), t, H, "")) < kTol);

    // With t = 2 a plain chunk hands rank 0 all of q and half of k: its
    // "heads" mix q, k and v columns, and the output is a different function.
    Tensor xn, wan, an, wpn;
    Tensor naive = tp_attention(TpSplit::Columns, xn, wan, an, wpn);
    CHECK(max_diff(naive, y) > 1e-2);
  }
}

TEST_CASE("tp shard: n_head % tp and undividable shapes are errors naming them",
          "[mpi][tp][tp_linear]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    const Tensor w = ones({6, 18});  // C = 6, 3 heads
    std::string e1 =
        error_of([&] { shard_param(w, TpSplit::Qkv, 0, t, 3, "h.0.attn.c_attn.weight"); });
    std::string e2 = error_of([&] {
      shard_param(ones({6, 6}), TpSplit::Rows, 0, 4, 3, "h.1.attn.c_proj.weight");
    });
    INFO(e1 << "\n" << e2);
    CHECK(has(e1, "h.0.attn.c_attn.weight"));
    CHECK(has(e1, "n_head 3"));
    CHECK(has(e1, str_cat("tp ", t)));
    CHECK(has(e2, "h.1.attn.c_proj.weight"));
    CHECK(has(e2, "[6, 6]"));
    CHECK(has(e2, "tp 4"));
  }
}

TEST_CASE("tp shard: every GPT parameter round-trips exactly, locally and gathered over tp",
          "[mpi][tp][tp_linear]") {
  Communicator world = Communicator::world();
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 16, cfg.block_size = T;
  GPT model(cfg, 7);
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    for (const auto& [name, full] : model.named_parameters()) {
      const TpSplit s = tp_split_of(name);
      INFO("tp " << t << " " << name << " " << tp_split_name(s));
      std::vector<Tensor> shards;
      for (int r = 0; r < t; ++r) shards.push_back(shard_param(full, s, r, t, cfg.n_head, name));
      Tensor mine = shard_param(full, s, tp.rank(), t, cfg.n_head, name);
      Tensor gathered = gather_param(mine, s, tp);
      CHECK(max_diff(unshard_param(shards, s), full) == 0);
      CHECK(max_diff(gathered, full) == 0);
      CHECK(mine.numel() * (s == TpSplit::Replicated ? 1 : t) == full.numel());
    }
    CHECK(tp_split_of("h.1.attn.c_attn.weight") == TpSplit::Qkv);
    CHECK(tp_split_of("h.1.attn.c_proj.bias") == TpSplit::Replicated);
    CHECK(tp_split_of("h.1.mlp.c_proj.weight") == TpSplit::Rows);
    CHECK(tp_split_of("h.1.mlp.c_fc.bias") == TpSplit::Columns);
    CHECK(tp_split_of("wte.weight") == TpSplit::Rows);
    CHECK(tp_split_of("wpe.weight") == TpSplit::Replicated);
  }
  // The q|k|v rule on a small example: t = 2, C = 4 → rank 1 owns columns
  // 2,3 (q), 6,7 (k), 10,11 (v).
  Tensor cols = reshape(arange(12), {1, 12});
  Tensor r1 = shard_param(cols, TpSplit::Qkv, 1, 2, 2, "c_attn");
  CHECK(max_diff(r1, from_vector({2.0, 3.0, 6.0, 7.0, 10.0, 11.0}, {1, 6})) == 0);
}
