// The GPT against PyTorch: committed reference data from tests/ref/gpt_ref.py
// (same weights, same batch): logits, loss, every gradient, and the weights
// after 3 SGD and 3 AdamW steps.
#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "catch_compat.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"
#include "optim/optimizer.h"
#include "tensor/storage.h"

using namespace ms;

namespace {

const char* kInit = "tests/ref/gpt_init.safetensors";
const char* kRef = "tests/ref/gpt_ref.safetensors";

// Relative error on the tensor's scale: max |a−b| / max |b|. (Per-element
// relative error is meaningless for entries that are ~0 next to their peers.)
// `skip[i]` excludes element i (see the AdamW test).
void check_rel(const std::string& what, const Tensor& got, const Tensor& want, double rtol,
               const std::vector<bool>& skip = {}) {
  REQUIRE(got.shape() == want.shape());
  std::vector<double> a = got.to_vector(), b = want.to_vector();
  double scale = 0, worst = 0;
  size_t at = 0;
  for (double x : b) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < a.size(); ++i) {
    if (!skip.empty() && skip[i]) continue;
    double r = std::fabs(a[i] - b[i]) / scale;
    if (r > worst) worst = r, at = i;
  }
  INFO(what << ": worst relative error " << worst << " at " << at << " (" << a[at] << " vs "
            << b[at] << ")");
  CHECK(worst <= rtol);
}

std::map<std::string, Tensor> reference() {
  return load_safetensors(kRef).tensors;
}

}  // namespace

TEST_CASE("GPT forward and backward match PyTorch", "[gpt][torch]") {
  auto model = GPT::from_safetensors(kInit);
  CHECK(model->config().n_layer == 2);
  CHECK(model->config().n_head == 2);
  CHECK(model->num_parameters() == 34176);
  auto ref = reference();
  Tensor logits = model->forward(ref["x"]);
  check_rel("logits", logits, ref["logits"], 1e-5);
  Tensor loss = cross_entropy(reshape(logits, {-1, 256}), reshape(ref["y"], {-1}));
  CHECK(std::fabs(loss.item() - ref["loss"].item()) <= 1e-5 * std::fabs(ref["loss"].item()));
  loss.backward();
  for (auto& [name, p] : model->named_parameters()) {
    REQUIRE(p.grad().defined());
    check_rel("grad." + name, p.grad(), ref["grad." + name], 1e-4);
  }
}

TEST_CASE("GPT after 3 SGD and 3 AdamW steps matches PyTorch", "[gpt][torch]") {
  auto ref = reference();
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  for (std::string opt : {"sgd", "adamw"}) {
    auto model = GPT::from_safetensors(kInit);
    std::unique_ptr<Optimizer> o;
    if (opt == "sgd")
      o = std::make_unique<SGD>(model->parameters(), 0.1, 0.9, 0.01);
    else
      o = std::make_unique<AdamW>(model->parameters(), 1e-3, 0.9, 0.95, 1e-8, 0.1);
    std::vector<double> losses = ref[opt + "_losses"].to_vector();
    for (int step = 0; step < 3; ++step) {
      Batch b = data.train_batch(step, 0, 1, 2, 16);
      o->zero_grad();
      Tensor loss = model->loss(b.x, b.y);
      CHECK(std::fabs(loss.item() - losses[step]) <= 1e-5 * losses[step]);
      loss.backward();
      o->step();
    }
    // AdamW divides by √v, so an element whose gradient is pure round-off
    // (e.g. the key biases, which softmax makes gradient-free: ~1e-12 here)
    // takes a full ±lr step in a direction set by that noise, in PyTorch and
    // here alike. Such elements (|grad| < 1e-5 of the tensor's largest) must
    // only stay within the 3·lr AdamW can move them; all others match to 1e-5.
    size_t noise_elements = 0, total = 0;
    for (auto& [name, p] : model->named_parameters()) {
      std::vector<bool> noise;
      if (opt == "adamw") {
        std::vector<double> g = ref["grad." + name].to_vector();
        double gmax = 0;
        for (double x : g) gmax = std::max(gmax, std::fabs(x));
        std::vector<double> a = p.to_vector(), b = ref[opt + "3." + name].to_vector();
        for (size_t i = 0; i < g.size(); ++i) {
          noise.push_back(std::fabs(g[i]) < 1e-5 * gmax);
          if (noise.back()) CHECK(std::fabs(a[i] - b[i]) <= 2 * 3 * 1e-3);
        }
        noise_elements += std::count(noise.begin(), noise.end(), true);
        total += g.size();
      }
      check_rel(opt + "3." + name, p, ref[opt + "3." + name], 1e-5, noise);
    }
    INFO("AdamW elements with round-off gradients: " << noise_elements << " of " << total);
    if (opt == "adamw") CHECK(noise_elements < total / 100);  // the exemption stays rare
  }
}

TEST_CASE("fused attention passes gradcheck and matches unfused ops", "[gpt][attention]") {
  Generator gen(21);
  Tensor qkv = uniform({2, 5, 12}, gen, -1, 1, DType::F64).set_requires_grad(true);
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& x) { return causal_attention(x[0], 2); }, {qkv});
  INFO(r.report);
  CHECK(r.ok);
  // Unfused: split heads, q·kᵀ/√hs with -inf above the diagonal, softmax, ·v.
  Tensor q = narrow(qkv, 2, 0, 4), k = narrow(qkv, 2, 4, 4), v = narrow(qkv, 2, 8, 4);
  auto heads = [](const Tensor& t) { return permute(reshape(t, {2, 5, 2, 2}), {0, 2, 1, 3}); };
  Tensor s = mul(matmul(heads(q), transpose(heads(k), -1, -2)), 1 / std::sqrt(2.0));
  std::vector<double> mask(25);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) mask[i * 5 + j] = j > i ? -INFINITY : 0;
  Tensor att = softmax(add(s, from_vector(mask, {5, 5}, DType::F64)));
  Tensor y = reshape(permute(matmul(att, heads(v)), {0, 2, 1, 3}), {2, 5, 4});
  CHECK(allclose(causal_attention(qkv, 2), y, 1e-12, 1e-12));
  CHECK_THROWS_WITH(causal_attention(qkv, 5), Catch::Contains("n_head 5"));
}

TEST_CASE("attention dropout: exact backward (f64 gradcheck, fixed mask), the unfused reference",
          "[gpt][attention][dropout]") {
  // T = 53 > the kernel's 48-row blocks, so the masked block loops are crossed.
  const int64_t B = 1, T = 53, NH = 2, hs = 3;
  Generator gen(5);
  Tensor qkv = uniform({B, T, 3 * NH * hs}, gen, -1, 1, DType::F64).set_requires_grad(true);
  Generator mask_gen(9);
  const DropoutMask mask = draw_dropout_mask({B, NH, T, T}, 0.3, mask_gen);
  GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>& x) { return causal_attention(x[0], NH, mask); }, {qkv});
  INFO(r.report);
  CHECK(r.ok);
  // Unfused: softmax, then P ∘ keep / (1-p), then ·v (Hugging Face's GPT2Attention).
  const int64_t C = NH * hs;
  Tensor q = narrow(qkv, 2, 0, C), k = narrow(qkv, 2, C, C), v = narrow(qkv, 2, 2 * C, C);
  auto heads = [&](const Tensor& t) { return permute(reshape(t, {B, T, NH, hs}), {0, 2, 1, 3}); };
  Tensor sc = mul(matmul(heads(q), transpose(heads(k), -1, -2)), 1 / std::sqrt(double(hs)));
  std::vector<double> causal(T * T), keep(B * NH * T * T);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) causal[i * T + j] = j > i ? -INFINITY : 0;
  int64_t dropped = 0;
  for (int64_t i = 0; i < B * NH * T * T; ++i) {
    keep[i] = mask.data()[i] ? 1 / 0.7 : 0;
    dropped += mask.data()[i] == 0;
  }
  CHECK(dropped > 0);
  Tensor att = mul(softmax(add(sc, from_vector(causal, {T, T}, DType::F64))),
                   from_vector(keep, {B, NH, T, T}, DType::F64));
  Tensor y = reshape(permute(matmul(att, heads(v)), {0, 2, 1, 3}), {B, T, C});
  CHECK(allclose(causal_attention(qkv, NH, mask), y, 1e-12, 1e-12));
  // Drawn from a generator: the same draws give the same mask; p = 0 is plain attention.
  Generator g1(3), g2(3), g0(3);
  CHECK(causal_attention(qkv, NH, 0.3, g1).to_vector() ==
        causal_attention(qkv, NH, draw_dropout_mask({B, NH, T, T}, 0.3, g2)).to_vector());
  CHECK(causal_attention(qkv, NH, 0.0, g0).to_vector() == causal_attention(qkv, NH).to_vector());
  CHECK(g0.seed_state() == Generator(3).seed_state());  // p = 0 draws nothing
  CHECK_THROWS_WITH(causal_attention(qkv, NH, 1.0, g0), Catch::Contains("attention dropout 1"));
}

TEST_CASE("dropout keeps a 1-byte mask, and its backward is exact", "[gpt][dropout]") {
  Generator gen(4);
  Tensor x = uniform({3, 64}, gen, -1, 1, DType::F64).set_requires_grad(true);
  Generator mg(8);
  const DropoutMask mask = draw_dropout_mask({3, 64}, 0.25, mg);
  CHECK(mask.bytes->nbytes() == 3 * 64);
  GradcheckResult r =
      gradcheck([&](const std::vector<Tensor>& t) { return apply_dropout_mask(t[0], mask); }, {x});
  INFO(r.report);
  CHECK(r.ok);
  // f32: what the graph keeps beyond the output is the mask's bytes, not an f32 mask or x.
  Tensor xf = uniform({16, 64}, gen, -1, 1).set_requires_grad(true);
  Generator g(2);
  const size_t before = cpu_bytes_allocated();
  Tensor y = dropout(xf, 0.1, g);
  CHECK(int64_t(cpu_bytes_allocated() - before) == 16 * 64 * 4 + 16 * 64);
}

TEST_CASE("attention dropout: a GPT with attn_dropout draws masks in train(), none in eval()",
          "[gpt][dropout]") {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 2, cfg.n_embd = 16, cfg.block_size = 8, cfg.attn_dropout = 0.5;
  GPT noisy(cfg, 7);
  cfg.attn_dropout = 0.0;
  GPT clean(cfg, 7);  // the attention stream does not touch the weights' init stream
  for (const auto& [name, p] : clean.named_parameters())
    CHECK(noisy.parameter(name).to_vector() == p.to_vector());
  Tensor idx = from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {1, 8}, DType::I32);
  NoGradGuard no_grad;
  const std::vector<double> c = clean.forward(idx).to_vector();
  CHECK(noisy.forward(idx).to_vector() != c);
  noisy.eval();
  CHECK(noisy.forward(idx).to_vector() == c);
  cfg.attn_dropout = 1.0;
  CHECK_THROWS_WITH(GPT(cfg, 1), Catch::Contains("attn_dropout 1"));
}

TEST_CASE("safetensors round trip of a GPT, and shape errors", "[gpt][safetensors]") {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 2, cfg.n_embd = 8, cfg.block_size = 4;
  GPT a(cfg, 1), b(cfg, 2);
  std::string path = "build/test_gpt_roundtrip.safetensors";
  a.save_safetensors(path);
  b.load_safetensors(path);
  for (auto& [name, p] : a.named_parameters()) CHECK(allclose(p, b.parameter(name), 0, 0));
  auto c = GPT::from_safetensors(path);
  CHECK(c->config().n_embd == 8);
  cfg.n_embd = 16;
  GPT d(cfg, 3);
  CHECK_THROWS_WITH(d.load_safetensors(path), Catch::Contains("wte.weight") &&
                                                  Catch::Contains("[256, 8]") &&
                                                  Catch::Contains("[256, 16]"));
  cfg.n_head = 3;
  CHECK_THROWS_WITH(cfg.validate(), Catch::Contains("n_embd 16") && Catch::Contains("n_head 3"));
}

TEST_CASE("data batches follow the contract", "[gpt][data]") {
  std::vector<uint8_t> bytes(101);
  for (int i = 0; i < 101; ++i) bytes[i] = static_cast<uint8_t>(i);
  TokenData data(bytes, bytes);
  // B=2, T=5: windows of 10; W = (101-1)/10 = 10 windows.
  Batch b = data.train_batch(1, 1, 2, 2, 5);  // window 3 -> offset 30
  CHECK(b.x.to_vector()[0] == 30);
  CHECK(b.y.to_vector()[9] == 40);
  CHECK(b.x.shape() == Shape{2, 5});
  CHECK(data.train_batch(5, 0, 2, 2, 5).x.to_vector()[0] == 0);  // window 10 wraps to 0
  // D ranks with batch B read, together, one process's batch D·B.
  Batch whole = data.train_batch(2, 0, 1, 4, 5);
  Batch r0 = data.train_batch(2, 0, 2, 2, 5), r1 = data.train_batch(2, 1, 2, 2, 5);
  std::vector<double> joined = r0.x.to_vector(), tail = r1.x.to_vector();
  joined.insert(joined.end(), tail.begin(), tail.end());
  CHECK(joined == whole.x.to_vector());
  CHECK_THROWS_WITH(data.train_batch(0, 0, 1, 20, 10), Catch::Contains("fewer than one batch"));
}

// Regression: the Dropout modules were created but not registered, so
// model.eval() never reached them and validation/sampling stayed noisy.
TEST_CASE("eval() switches every dropout off", "[gpt][dropout]") {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 16, cfg.block_size = 8, cfg.dropout = 0.5;
  GPT noisy(cfg, 7);
  cfg.dropout = 0.0;
  GPT clean(cfg, 7);  // same seed: same weights
  Tensor idx = from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {1, 8}, DType::I32);
  noisy.eval();
  NoGradGuard no_grad;
  std::vector<double> a = noisy.forward(idx).to_vector(), b = noisy.forward(idx).to_vector(),
                      c = clean.forward(idx).to_vector();
  REQUIRE(a == b);
  REQUIRE(a == c);
  noisy.train();
  REQUIRE(noisy.forward(idx).to_vector() != a);  // and train() turns it back on
}
