// Dropout streams under tp (parallel/tp/random.h): which masks agree across
// tp ranks and which differ, and sequence-parallel dropout equal to the
// serial dropout's slice (values, gradient and the generator's next draw);
// attention dropout on the per-rank stream, and its replay under activation
// checkpointing.
#include <cstring>

#include "nn/checkpointed_block.h"
#include "nn/gpt.h"
#include "parallel/tp/random.h"
#include "parallel/tp/tp_gpt.h"
#include "tensor/storage.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

// Every tp rank's tensor, in rank order (t blocks).
Tensor gathered(const Tensor& x, Communicator& tp) {
  Tensor xc = contiguous(x);
  Shape s{tp.size()};
  s.insert(s.end(), x.shape().begin(), x.shape().end());
  Tensor out = Tensor::empty(s, x.dtype());
  tp.all_gather(xc, out);
  return out;
}

}  // namespace

TEST_CASE("tp random: shared masks agree across tp ranks, per-rank masks differ",
          "[mpi][tp][tp_random]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    TpGenerators gens = tp_generators(1234, tp.rank());
    Tensor shared_mask = dropout(ones({4, 64}), 0.5, gens.shared);
    Tensor own_mask = dropout(ones({4, 64}), 0.5, gens.per_rank);
    Tensor all_shared = gathered(shared_mask, tp), all_own = gathered(own_mask, tp);
    for (int k = 1; k < t; ++k) {
      CHECK(max_diff(select(all_shared, 0, k), select(all_shared, 0, 0)) == 0);
      CHECK(max_diff(select(all_own, 0, k), select(all_own, 0, 0)) > 0);
    }
  }
}

TEST_CASE("tp random: sequence-parallel dropout is the serial dropout's slice",
          "[mpi][tp][tp_random]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const int64_t B = 2, T = 8, C = 6, n = T / t;
    const Tensor X = seeded({B, T, C}, 5), G = seeded({B, T, C}, 6);
    Generator serial_gen(99), sp_gen(99);
    Tensor x = leaf(X);
    Tensor y = dropout(x, 0.3, serial_gen);
    sum(y * G).backward();
    Tensor xs = leaf(narrow(X, 1, tp.rank() * n, n));
    Tensor ys = sequence_parallel_dropout(xs, 0.3, sp_gen, tp);
    sum(ys * narrow(G, 1, tp.rank() * n, n)).backward();
    CHECK(max_diff(ys, narrow(y, 1, tp.rank() * n, n)) == 0);
    CHECK(max_diff(xs.grad(), narrow(x.grad(), 1, tp.rank() * n, n)) == 0);
    CHECK(serial_gen.next_u64() == sp_gen.next_u64());  // the stream stays in step
  }
}

namespace {

constexpr int64_t kB = 2, kT = 8, kC = 16, kNH = 4;

GPTConfig attn_dropout_layer(double dropout) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = kNH, cfg.n_embd = kC, cfg.block_size = kT;
  cfg.dropout = dropout, cfg.attn_dropout = 0.3;
  return cfg;
}

// The serial block computed by hand, with attention mask `mask` (B, NH, T, T).
Tensor serial_block(Block& b, const Tensor& x, const DropoutMask& mask) {
  Tensor qkv = b.attn->c_attn->forward(b.ln_1->forward(x));
  Tensor h = x + b.attn->c_proj->forward(causal_attention(qkv, kNH, mask));
  return h + b.mlp->c_proj->forward(gelu(b.mlp->c_fc->forward(b.ln_2->forward(h))));
}

}  // namespace

// Megatron's rule for dropout inside the tp region: attention dropout runs on
// the model-parallel stream (seed + 2718 + tp_rank), so tp ranks drop
// different entries of their different heads, and a tp run does NOT draw the
// serial model's attention masks. What it computes is the serial block with
// the mask made of the ranks' masks side by side over the heads.
TEST_CASE("tp random: attention dropout runs on the per-rank stream; the serial block with "
          "the ranks' masks side by side gives the same output and input gradient",
          "[mpi][tp][tp_random]") {
  Communicator world = Communicator::world();
  const Tensor X = seeded({kB, kT, kC}, 11), G = seeded({kB, kT, kC}, 12);
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    auto serial = std::make_shared<GPT>(attn_dropout_layer(0), 3);
    auto block = std::dynamic_pointer_cast<Block>(serial->blocks()[0]);
    const uint64_t seed = block->attn->attn_dropout->generator().seed_state();
    // The composite mask: heads [r·NH/t, (r+1)·NH/t) from rank r's stream.
    const int64_t hl = kNH / t;
    DropoutMask full{std::make_shared<Storage>(size_t(kB * kNH * kT * kT), Device::CPU),
                     {kB, kNH, kT, kT}, 0.3};
    auto* dst = static_cast<uint8_t*>(full.bytes->data());
    for (int r = 0; r < t; ++r) {
      Generator g(seed + kModelParallelSeedOffset + uint64_t(r));
      DropoutMask m = draw_dropout_mask({kB, hl, kT, kT}, 0.3, g);
      for (int64_t b = 0; b < kB; ++b)
        std::memcpy(dst + (b * kNH + r * hl) * kT * kT, m.data() + b * hl * kT * kT,
                    size_t(hl * kT * kT));
    }
    Tensor xs = leaf(X);
    Tensor want = serial_block(*block, xs, full);
    sum(want * G).backward();

    TpGPT cut(std::make_shared<GPT>(attn_dropout_layer(0), 3), tp, false);
    Tensor xt = leaf(X);
    Tensor got = cut.gpt().blocks()[0]->forward(xt);
    sum(got * G).backward();
    Tensor all = Tensor::empty({t, kB, kT, kC});
    Tensor gc = contiguous(detach(got));
    tp.all_gather(gc, all);
    CHECK(max_diff(got, want) < 1e-5);
    CHECK(max_diff(xt.grad(), xs.grad()) < 1e-5);
    for (int k = 1; k < t; ++k) CHECK(max_diff(select(all, 0, k), select(all, 0, 0)) == 0);
    // Not the serial model's own masks: its stream is `seed`, not seed + 2718 + r.
    Generator own(seed);
    DropoutMask serial_mask = draw_dropout_mask({kB, kNH, kT, kT}, 0.3, own);
    CHECK(std::memcmp(serial_mask.data(), full.data(), size_t(kB * kNH * kT * kT)) != 0);
  }
}

TEST_CASE("tp random: with attention and residual dropout, checkpointed tp blocks replay the "
          "masks: loss and gradients bit for bit",
          "[mpi][tp][tp_random]") {
  Communicator world = Communicator::world();
  std::vector<double> ids(kB * kT);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = double((i * 37 + 5) % 256);
  const Tensor tokens = from_vector(ids, {kB, kT}, DType::I32);
  for (int t : tp_sizes(world))
    for (bool sp : {false, true}) {
      Communicator tp = tp_group(world, t);
      INFO("tp " << t << " sp " << sp);
      std::vector<std::vector<double>> grads[2];
      double losses[2];
      for (int ckpt : {0, 1}) {
        TpGPT m(std::make_shared<GPT>(attn_dropout_layer(0.1), 3), tp, sp);
        if (ckpt) checkpoint_blocks(m.gpt());
        Tensor loss = m.loss(tokens, tokens);
        loss.backward();
        losses[ckpt] = loss.item();
        for (const Tensor& p : m.gpt().parameters()) grads[ckpt].push_back(p.grad().to_vector());
      }
      CHECK(losses[0] == losses[1]);
      CHECK(grads[0] == grads[1]);
    }
}
