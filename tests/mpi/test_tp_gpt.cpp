// The tensor-parallel GPT (parallel/tp/tp_gpt.h) against the serial GPT
// (nn/gpt.h) of the same seed, at tp = 2 and 4, with and without sequence
// parallelism: the loss, every parameter's gradient (shards gathered back),
// the gradient norm counting each parameter once (and the classic mistake of
// counting replicated ones t times), and the tp traffic of one step against
// Megatron's count. tests/mpi/test_tp_model.cpp covers names, shapes,
// dropout and training under ZeRO.
#include <map>

#include "nn/gpt.h"
#include "parallel/tp/grad_norm.h"
#include "parallel/tp/sequence_parallel.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/tp_gpt.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 8;

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = 16, c.block_size = T, c.vocab_size = 256;
  return c;
}

}  // namespace

TEST_CASE("tp GPT: loss and every gradient equal the serial GPT's, with and without SP",
          "[mpi][tp][tp_gpt]") {
  Communicator world = Communicator::world();
  const GPTConfig cfg = tiny();
  const Tensor idx = seeded_tokens(B, T, 1), targets = seeded_tokens(B, T, 2);
  GPT serial(cfg, 42);
  Tensor loss = serial.loss(idx, targets);
  loss.backward();
  double serial_norm2 = 0, replicated_norm2 = 0;
  for (const auto& [name, p] : serial.named_parameters()) {
    const double g2 = sum(pow(to(p.grad(), DType::F64), 2)).item();
    serial_norm2 += g2;
    if (tp_split_of(name) == TpSplit::Replicated) replicated_norm2 += g2;
  }

  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    std::map<bool, Traffic> fwd, bwd;
    for (bool sp : {false, true}) {
      INFO("tp " << t << ", tp rank " << tp.rank() << ", sequence_parallel " << sp);
      TpGPT m(std::make_shared<GPT>(cfg, 42), tp, sp);
      const auto named = m.gpt().named_parameters();
      Traffic t0 = tp.traffic();
      Tensor tl = m.loss(idx, targets);
      fwd[sp] = tp.traffic() - t0;
      tl.backward();
      bwd[sp] = tp.traffic() - t0 - fwd[sp];
      // Every replicated parameter saw only this rank's tokens under SP.
      std::vector<Tensor> replicated;
      for (const auto& [name, p] : named)
        if (tp_split_of(name) == TpSplit::Replicated) replicated.push_back(p);
      if (sp) allreduce_sequence_parallel_grads(replicated, tp);
      const double norm2 = tp_grad_norm_squared(named, tp);
      // The classic mistake: every rank's ‖g‖² summed over tp counts each
      // replicated parameter t times.
      Tensor naive = zeros({1}, DType::F64);
      for (const auto& [name, p] : named) naive = naive + sum(pow(to(p.grad(), DType::F64), 2));
      tp.all_reduce(naive);
      std::vector<std::pair<std::string, Tensor>> gathered;
      for (const auto& [name, p] : named)
        gathered.emplace_back(name, gather_param(p.grad(), tp_split_of(name), tp));

      CHECK(std::fabs(tl.item() - loss.item()) < 1e-5);
      for (const auto& [name, g] : gathered) {
        Tensor want = serial.parameter(name).grad();
        INFO(name << " max |grad| " << max_diff(want, zeros_like(want)));
        // Relative to the gradient's scale: LayerNorm grads here are ~1e-3.
        CHECK(max_diff(g, want) <= 1e-5 * max_diff(want, zeros_like(want)));
      }
      CHECK(std::fabs(norm2 - serial_norm2) < 1e-6 * serial_norm2);
      CHECK(replicated_norm2 > 0);
      CHECK(std::fabs(naive.item() - (serial_norm2 + (t - 1) * replicated_norm2)) <
            1e-6 * serial_norm2);
    }
    // Megatron's count for one forward + backward (Shoeybi §3, Korthikanti
    // §4.2.2), B·T·C = n elements: per layer 2 all-reduces of n forward and 2
    // backward, the embedding's 1 forward and the head's f 1 backward, the
    // cross-entropy's 3 of B·T forward — 2(t−1)/t of each sent per rank; with
    // SP each all-reduce of n becomes an all-gather + reduce-scatter sending
    // the same bytes, and backward all-gathers each column layer's input again
    // (2L + the head's 1), which keeps only the (B, T/t, C) shard: (t−1)/t·n each.
    const int64_t n = B * T * cfg.n_embd * 4, L = cfg.n_layer, bt = B * T * 4;
    auto ar_sent = [&](int64_t bytes) { return 2 * (t - 1) * bytes / t; };
    INFO("tp " << t << "\nforward:\n"
               << fwd[false].describe() << "backward:\n"
               << bwd[false].describe() << "SP forward:\n"
               << fwd[true].describe() << "SP backward:\n"
               << bwd[true].describe());
    CHECK(fwd[false][CommOp::AllReduce].calls == 2 * L + 1 + 3);
    CHECK(fwd[false].total().sent == (2 * L + 1) * ar_sent(n) + 3 * ar_sent(bt));
    CHECK(bwd[false][CommOp::AllReduce].calls == 2 * L + 1);
    CHECK(bwd[false].total().sent == (2 * L + 1) * ar_sent(n));
    CHECK(fwd[true][CommOp::AllReduce].calls == 3);
    CHECK(fwd[true][CommOp::AllGather].calls == 2 * L + 1);
    CHECK(fwd[true][CommOp::ReduceScatter].calls == 2 * L + 1);
    CHECK(bwd[true][CommOp::AllGather].calls == 2 * (2 * L + 1));
    CHECK(bwd[true][CommOp::ReduceScatter].calls == 2 * L + 1);
    CHECK(fwd[true].total().sent == fwd[false].total().sent);
    CHECK(bwd[true].total().sent == bwd[false].total().sent + (2 * L + 1) * (t - 1) * n / t);
  }
}
