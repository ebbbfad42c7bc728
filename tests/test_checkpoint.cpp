// Activation checkpointing (autograd/checkpoint.h, nn/checkpointed_block.h):
// with dropout on, every gradient is bit for bit the one without
// checkpointing, for one block and for the whole GPT, and so is training;
// without replaying the dropout streams the gradients are wrong (the RNG trap
// is real); and what a block keeps alive after its forward, MEASURED with the
// allocator's counter, drops from lesson 04's 16·BTC + NH·BT² values (+ the
// named extras) to the block's output alone.
#include <memory>
#include <string>
#include <vector>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "catch_compat.h"
#include "nn/checkpointed_block.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/tp/activation_memory.h"
#include "tensor/storage.h"

using namespace ms;

namespace {

constexpr int64_t B = 2, T = 16, C = 32, NH = 4;

GPTConfig tiny(double dropout, int64_t layers = 1) {
  GPTConfig c;
  c.n_layer = layers, c.n_head = NH, c.n_embd = C, c.block_size = T, c.dropout = dropout;
  return c;
}

Tensor random(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return randn(shape, g);
}

Tensor tokens(uint64_t seed) {
  Generator g(seed);
  std::vector<double> v(B * T);
  for (double& x : v) x = static_cast<double>(g.next_u64() % 256);
  return from_vector(v, {B, T}, DType::I32);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

// Runs `layer` on a fresh leaf copy of x and backpropagates a fixed random
// projection of its output; returns {output, x.grad}.
std::pair<Tensor, Tensor> run_block(Layer& layer, const Tensor& x) {
  Tensor in = detach(clone(x)).set_requires_grad(true);
  Tensor y = layer.forward(in);
  sum(mul(y, random(y.shape(), 99))).backward();
  return {y, in.grad()};
}

// Every parameter's gradient of `a` equals `b`'s bit for bit (names compared too).
void check_same_grads(const Module& a, const Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    CHECK(pa[i].first == pb[i].first);
    CHECK(bitwise_equal(pa[i].second.grad(), pb[i].second.grad()));
  }
}

// Bytes one forward of `layer` leaves allocated (the input x already exists).
int64_t kept_by_forward(Layer& layer, const Tensor& x, Tensor& out) {
  const size_t before = cpu_bytes_allocated();
  out = layer.forward(x);
  return static_cast<int64_t>(cpu_bytes_allocated() - before);
}

}  // namespace

TEST_CASE("checkpoint: one block with dropout, gradients bit for bit", "[checkpoint]") {
  GPTConfig cfg = tiny(0.1);
  cfg.attn_dropout = 0.2;  // the attention probabilities' mask must replay too
  GPT plain(cfg, 5), ckpt(cfg, 5);
  auto wrapped = std::make_shared<CheckpointedBlock>(ckpt.blocks()[0]);
  CHECK(dropout_generators(*wrapped).size() == 3);  // attn.attn_dropout, attn.resid_dropout, mlp.dropout
  Tensor x = random({B, T, C}, 3);
  auto [y_plain, gx_plain] = run_block(*plain.blocks()[0], x);
  auto [y_ckpt, gx_ckpt] = run_block(*wrapped, x);
  CHECK(bitwise_equal(y_plain, y_ckpt));
  CHECK(bitwise_equal(gx_plain, gx_ckpt));
  check_same_grads(*plain.blocks()[0], *wrapped);
  // The recompute put the streams back where the forward left them: the next
  // forward draws what it would have drawn without checkpointing.
  CHECK(plain.blocks()[0]->forward(x).to_vector() == wrapped->forward(x).to_vector());
}

TEST_CASE("checkpoint: a whole GPT with every block wrapped trains bit for bit", "[checkpoint]") {
  GPT plain(tiny(0.1, 3), 11), ckpt(tiny(0.1, 3), 11);
  std::vector<std::shared_ptr<Layer>> replaced = checkpoint_blocks(ckpt);
  REQUIRE(replaced.size() == 3);
  for (const auto& b : ckpt.blocks()) CHECK(std::dynamic_pointer_cast<CheckpointedBlock>(b));
  // The wrappers add no level to the names: the same parameters, same order.
  REQUIRE(plain.named_parameters().size() == ckpt.named_parameters().size());
  AdamW opt_plain(plain.parameters(), 1e-2), opt_ckpt(ckpt.parameters(), 1e-2);
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    Tensor idx = tokens(20 + step), tgt = tokens(40 + step);
    plain.zero_grad(), ckpt.zero_grad();
    Tensor loss_plain = plain.loss(idx, tgt), loss_ckpt = ckpt.loss(idx, tgt);
    CHECK(loss_plain.item() == loss_ckpt.item());
    loss_plain.backward();
    loss_ckpt.backward();
    check_same_grads(plain, ckpt);
    opt_plain.step();
    opt_ckpt.step();
  }
  auto pa = plain.named_parameters(), pb = ckpt.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    CHECK(bitwise_equal(pa[i].second, pb[i].second));
  }
  // Undone, the model is the plain one again.
  for (size_t i = 0; i < replaced.size(); ++i) ckpt.replace_block(i, replaced[i]);
  CHECK(std::dynamic_pointer_cast<Block>(ckpt.blocks()[0]));
}

TEST_CASE("checkpoint: without replaying the dropout streams the gradients are wrong",
          "[checkpoint]") {
  GPT plain(tiny(0.1), 5), forgetful(tiny(0.1), 5);
  std::shared_ptr<Layer> block = forgetful.blocks()[0];
  Tensor x = random({B, T, C}, 3);
  auto [y_plain, gx_plain] = run_block(*plain.blocks()[0], x);
  // The same checkpoint, not told about the block's generators: the recompute
  // draws the NEXT masks, so backward differentiates another function.
  Tensor in = detach(clone(x)).set_requires_grad(true);
  Tensor y = checkpoint([&](const Tensor& t) { return block->forward(t); }, in);
  CHECK(bitwise_equal(y, y_plain));  // the forward itself is right
  sum(mul(y, random(y.shape(), 99))).backward();
  CHECK_FALSE(bitwise_equal(in.grad(), gx_plain));
  CHECK_FALSE(bitwise_equal(block->parameter("mlp.c_fc.weight").grad(),
                            plain.blocks()[0]->parameter("mlp.c_fc.weight").grad()));

  // Control: with dropout 0 there is nothing to replay and the same call is exact.
  GPT plain0(tiny(0), 5), forgetful0(tiny(0), 5);
  std::shared_ptr<Layer> block0 = forgetful0.blocks()[0];
  auto [y0, gx0] = run_block(*plain0.blocks()[0], x);
  Tensor in0 = detach(clone(x)).set_requires_grad(true);
  Tensor out0 = checkpoint([&](const Tensor& t) { return block0->forward(t); }, in0);
  sum(mul(out0, random(out0.shape(), 99))).backward();
  CHECK(bitwise_equal(in0.grad(), gx0));
}

TEST_CASE("checkpoint: a block keeps only its output after forward, measured to the byte",
          "[checkpoint]") {
  const int64_t sbh = B * T * C;
  for (double p : {0.0, 0.1}) {
    const BlockActivations counted = block_activations(ActivationShape{B, T, C, NH, 1, false, false, p});
    INFO("dropout " << p << "; " << counted.rule);
    GPT model(tiny(p), 5);
    std::shared_ptr<Layer> block = model.blocks()[0];
    CheckpointedBlock wrapped(block);
    Tensor x = random({B, T, C}, 3);  // the block's input, already allocated
    const int64_t input = 4 * sbh;
    Tensor out;
    const int64_t plain = kept_by_forward(*block, x, out);
    // Each dropout keeps only its 1-byte mask (counted in saved when p > 0).
    INFO("without checkpointing: kept " << plain << " B + input " << input << " B; counted "
                                        << counted.saved_bytes() << " B saved + "
                                        << counted.extra_bytes() << " B extras");
    CHECK(plain + input == counted.saved_bytes() + counted.extra_bytes());
    out = Tensor();
    const int64_t ckpt = kept_by_forward(wrapped, x, out);
    INFO("with checkpointing: kept " << ckpt << " B (the input " << input
                                     << " B is the caller's, shared)");
    CHECK(ckpt == 4 * sbh);  // the block's output, which is the next block's input
    sum(out).backward();     // and backward still runs from what was kept
    CHECK(block->parameter("attn.c_attn.weight").grad().defined());
  }
}

TEST_CASE("checkpoint: the whole GPT saves L × (15·BTC + NH·BT + LayerNorm stats), measured",
          "[checkpoint]") {
  const int64_t L = 3;
  GPT plain(tiny(0, L), 11), ckpt(tiny(0, L), 11);
  checkpoint_blocks(ckpt);
  Tensor idx = tokens(20), tgt = tokens(40);
  auto kept = [&](GPT& m) {
    const size_t before = cpu_bytes_allocated();
    Tensor loss = m.loss(idx, tgt);
    const int64_t bytes = static_cast<int64_t>(cpu_bytes_allocated() - before);
    loss.backward();
    return bytes;
  };
  const int64_t plain_bytes = kept(plain), ckpt_bytes = kept(ckpt);
  const BlockActivations a = block_activations(ActivationShape{B, T, C, NH});
  // Both keep every block's input (plain: as ln_1's saved input; checkpointed:
  // as the checkpoint's one saved tensor) and the last block's output (ln_f
  // saves it). Everything else a block saves — its count minus the input,
  // and its output, which is the next block's input — is gone.
  const int64_t per_block = a.saved_values() + a.extra_values() - 2 * B * T * C;
  INFO("plain " << plain_bytes << " B, checkpointed " << ckpt_bytes << " B, per block "
                << 4 * per_block << " B");
  CHECK(plain_bytes - ckpt_bytes == 4 * L * per_block);
}

TEST_CASE("checkpoint: runs fn again in backward, inputs without grad, no-grad mode, errors", "[checkpoint]") {
  GPT model(tiny(0.1), 5);
  std::shared_ptr<Layer> block = model.blocks()[0];
  std::vector<Generator*> gens = dropout_generators(*block);
  std::vector<std::string> events;
  auto fn = [&](const Tensor& t) {
    events.push_back("forward");
    return block->forward(t);
  };
  // The input needs no gradient, the parameters still get theirs (PyTorch's
  // reentrant checkpoint would silently drop them).
  Tensor x = random({B, T, C}, 3);
  Tensor y = checkpoint(fn, x, gens);
  CHECK(y.requires_grad());
  CHECK(events == std::vector<std::string>{"forward"});
  sum(y).backward();  // the recompute: fn once more, inside backward
  CHECK(events == std::vector<std::string>{"forward", "forward"});
  CHECK(block->parameter("ln_1.weight").grad().defined());
  CHECK_FALSE(x.grad().defined());

  // Under no_grad it is fn itself: nothing recorded.
  {
    NoGradGuard no_grad;
    Tensor z = checkpoint(fn, x, gens);
    CHECK_FALSE(z.requires_grad());
  }
  // The output is a node of its own even when fn returns its input.
  Tensor leaf_in = detach(clone(x)).set_requires_grad(true);
  Tensor same = checkpoint([](const Tensor& t) { return t; }, leaf_in);
  CHECK(leaf_in.is_leaf());
  sum(same).backward();
  CHECK(leaf_in.grad().to_vector() == ones({B, T, C}).to_vector());

  CHECK_THROWS_WITH(checkpoint(nullptr, x), Catch::Contains("no function"));
  CHECK_THROWS_WITH(checkpoint(fn, x, {nullptr}), Catch::Contains("generator is null"));
}
