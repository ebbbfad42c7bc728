// Vocab-parallel embedding, the tied head's logits shard and the
// vocab-parallel cross-entropy (parallel/tp/vocab_parallel.h,
// cross_entropy.h) against the serial embedding / linear / cross_entropy on
// the same data, at tp = 2 and 4: outputs, gradients of the shards and of h,
// the ledger (the cross-entropy makes exactly 3 all-reduces of N elements and
// nothing in backward), and the tied embedding + head accumulating into one
// shard, with and without sequence parallelism.
#include "parallel/tp/cross_entropy.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/vocab_parallel.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 8, C = 12, V = 64, N = B * T;
constexpr double kTol = 2e-5;

// Ids covering every rank's range, including both ends of the vocabulary.
Tensor seeded_ids(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  std::vector<int32_t> v(shape_numel(shape));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t(gen.next_u64() % V);
  v[0] = 0;
  v[1] = V - 1;
  return from_vector(v, shape);
}

Tensor rows_of(const Tensor& full, Communicator& tp) {
  return shard_param(full, TpSplit::Rows, tp.rank(), tp.size(), 1, "wte");
}
Tensor cols_of(const Tensor& full, Communicator& tp) {
  return shard_param(full, TpSplit::Columns, tp.rank(), tp.size(), 1, "logits");
}
Tensor seq_slice(const Tensor& full, Communicator& tp) {
  const int64_t n = full.shape()[1] / tp.size();
  return narrow(full, 1, tp.rank() * n, n);
}

}  // namespace

TEST_CASE("tp vocab: the vocab-parallel embedding equals the serial lookup",
          "[mpi][tp][tp_vocab]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Tensor W = seeded({V, C}, 1), ids = seeded_ids({B, T}, 2), G = seeded({B, T, C}, 3);
    Tensor w = leaf(W);
    Tensor e = embedding(w, ids);
    sum(e * G).backward();

    for (bool sp : {false, true}) {
      INFO("sequence_parallel " << sp);
      Tensor ws = leaf(rows_of(W, tp));
      Traffic t0 = tp.traffic();
      Tensor es = vocab_parallel_embedding(ws, ids, tp, sp);
      Traffic fwd = tp.traffic() - t0;
      sum(es * (sp ? seq_slice(G, tp) : G)).backward();
      Traffic bwd = tp.traffic() - t0 - fwd;
      CHECK(max_diff(es, sp ? seq_slice(e, tp) : e) == 0);  // one nonzero term per sum
      CHECK(max_diff(ws.grad(), rows_of(w.grad(), tp)) < kTol);
      CHECK(fwd.total().calls == 1);
      CHECK(fwd[sp ? CommOp::ReduceScatter : CommOp::AllReduce].payload == B * T * C * 4);
      // g's backward is the identity; under SP the reduce-scatter's is an all-gather.
      CHECK(bwd.total().calls == (sp ? 1 : 0));
      CHECK(bwd[CommOp::AllGather].payload == (sp ? B * T * C * 4 : 0));
    }
    std::string err =
        error_of([&] { vocab_parallel_embedding(rows_of(W, tp), full({2}, V, DType::I32), tp); });
    INFO(err);
    CHECK(has(err, "vocab_parallel_embedding"));
    CHECK(has(err, str_cat("id ", V)));
  }
}

TEST_CASE("tp vocab: vocab-parallel cross-entropy equals the serial one, with 3 all-reduces",
          "[mpi][tp][tp_vocab]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Tensor targets = reshape(seeded_ids({B, T}, 4), {N});
    // Offset 1000: a softmax without the global max would overflow exp.
    for (double offset : {0.0, 1000.0}) {
      INFO("logit offset " << offset);
      const Tensor L = seeded({N, V}, 5, 3.0) + offset;
      Tensor l = leaf(L);
      Tensor loss = cross_entropy(l, targets);
      (loss * 0.7).backward();

      Tensor ls = leaf(cols_of(L, tp));
      Traffic t0 = tp.traffic();
      Tensor loss_s = vocab_parallel_cross_entropy(ls, targets, tp);
      Traffic fwd = tp.traffic() - t0;
      (loss_s * 0.7).backward();
      Traffic bwd = tp.traffic() - t0 - fwd;
      CHECK(std::isfinite(loss_s.item()));
      CHECK(std::fabs(loss_s.item() - loss.item()) < kTol);
      CHECK(max_diff(ls.grad(), cols_of(l.grad(), tp)) < kTol);
      // Megatron's test_cross_entropy asserts the same: max, target, sum-exp.
      CHECK(fwd.total().calls == 3);
      CHECK(fwd[CommOp::AllReduce].calls == 3);
      CHECK(fwd[CommOp::AllReduce].payload == 3 * N * 4);
      CHECK(bwd.total().calls == 0);
    }
    std::string err = error_of([&] {
      vocab_parallel_cross_entropy(zeros({2, V / t}), full({2}, -1, DType::I32), tp);
    });
    INFO(err);
    CHECK(has(err, "vocab_parallel_cross_entropy"));
    CHECK(has(err, "target -1"));
  }
}

TEST_CASE("tp vocab: tied embedding and head share one shard; no full-vocabulary logits",
          "[mpi][tp][tp_vocab]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Tensor W = seeded({V, C}, 6, 0.5), ids = seeded_ids({B, T}, 7),
                 targets = reshape(seeded_ids({B, T}, 8), {N});
    // Serial: loss = CE(tanh(wte[ids]) · wteᵀ) with the tied wte.
    Tensor w = leaf(W);
    Tensor h = tanh(embedding(w, ids));
    Tensor loss = cross_entropy(reshape(linear(h, transpose(w, 0, 1)), {N, V}), targets);
    loss.backward();

    for (bool sp : {false, true}) {
      INFO("sequence_parallel " << sp);
      Tensor ws = leaf(rows_of(W, tp));
      Traffic t0 = tp.traffic();
      Tensor hs = tanh(vocab_parallel_embedding(ws, ids, tp, sp));  // (B, T[/t], C)
      Tensor logits = vocab_parallel_logits(hs, ws, tp, sp);        // (B, T, V/t)
      Tensor loss_s = vocab_parallel_cross_entropy(reshape(logits, {N, V / t}), targets, tp);
      Traffic fwd = tp.traffic() - t0;
      loss_s.backward();
      Traffic bwd = tp.traffic() - t0 - fwd;
      CHECK(logits.shape() == Shape{B, T, V / t});
      CHECK(std::fabs(loss_s.item() - loss.item()) < kTol);
      CHECK(max_diff(ws.grad(), rows_of(w.grad(), tp)) < kTol);  // lookup + head, one shard
      // Embedding 1 (B·T·C), cross-entropy 3 (B·T each); backward: the head's
      // f (B·T·C). Under SP the B·T·C ones become reduce-scatter / all-gather,
      // and the head's backward all-gathers its (B, T/t, C) input again (it
      // kept only the shard): the head's reduce-scatter, its re-gather and
      // the embedding's all-gather.
      const int64_t btc = B * T * C * 4;
      CHECK(fwd[CommOp::AllReduce].calls == (sp ? 3 : 4));
      CHECK(fwd[CommOp::AllReduce].payload == 3 * N * 4 + (sp ? 0 : btc));
      CHECK(fwd[CommOp::ReduceScatter].payload == (sp ? btc : 0));
      CHECK(fwd[CommOp::AllGather].payload == (sp ? btc : 0));
      CHECK(bwd.total().calls == (sp ? 3 : 1));
      CHECK(bwd[CommOp::AllReduce].payload == (sp ? 0 : btc));
      CHECK(bwd[CommOp::AllGather].payload == (sp ? 2 * btc : 0));  // embedding + re-gather
    }
  }
}
