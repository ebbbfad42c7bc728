// Device::Sim against the CPU: every op's forward and backward through the
// device path (tensor/device_kernels.h) equals the CPU op bit for bit, the
// results stay on the device, and a host access or a forgotten device switch
// on a Sim tensor is an ms::Error naming the code that made it.
#include <cstring>
#include <functional>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "catch_compat.h"
#include "nn/generate.h"
#include "nn/gpt.h"
#include "tensor/device_kernels.h"

using namespace ms;

namespace {

// Equal bytes, equal shape and dtype; `sim` must live on Sim.
void require_bitwise(const Tensor& cpu, const Tensor& sim, const std::string& what) {
  INFO(what);
  REQUIRE(cpu.defined() == sim.defined());
  if (!cpu.defined()) return;
  REQUIRE(cpu.device() == Device::CPU);
  REQUIRE(sim.device() == Device::Sim);
  REQUIRE(cpu.shape() == sim.shape());
  REQUIRE(cpu.dtype() == sim.dtype());
  Tensor a = contiguous(cpu), b = sim.to(Device::CPU);
  CHECK(std::memcmp(a.host_raw_data(), b.host_raw_data(), a.nbytes()) == 0);
}

struct OpCase {
  std::string name;
  std::vector<Tensor> inputs;  // CPU; float inputs become leaves that require grad
  std::function<Tensor(const std::vector<Tensor>&)> f;
};

std::vector<Tensor> leaves(const std::vector<Tensor>& xs, Device d) {
  std::vector<Tensor> out;
  for (const Tensor& x : xs) {
    Tensor y = detach(x).to(d);
    if (d == Device::CPU) y = clone(y);  // a fresh leaf either way
    if (is_float_dtype(y.dtype())) y.set_requires_grad(true);
    out.push_back(y);
  }
  return out;
}

// Runs f forward and backward on both devices and compares every output and gradient.
void check_op(const OpCase& c) {
  INFO("op " << c.name);
  std::vector<Tensor> xc = leaves(c.inputs, Device::CPU), xs = leaves(c.inputs, Device::Sim);
  Tensor yc = c.f(xc), ys = c.f(xs);
  require_bitwise(yc, ys, c.name + " forward");
  if (!yc.requires_grad()) return;
  Generator gen(99);
  Tensor g = to(randn(yc.shape(), gen), yc.dtype());
  yc.backward(g);
  ys.backward(g.to(Device::Sim));
  for (size_t i = 0; i < xc.size(); ++i)
    if (xc[i].requires_grad())
      require_bitwise(xc[i].grad(), xs[i].grad(), c.name + " grad of input " + std::to_string(i));
}

Tensor rnd(const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  Generator gen(seed);
  return randn(shape, gen, 0, 1, dtype);
}
Tensor positive(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return uniform(shape, gen, 0.5, 2.0);
}

std::vector<OpCase> op_cases() {
  using V = std::vector<Tensor>;
  std::vector<OpCase> cases = {
      // elementwise, with broadcasting and strided views
      {"add broadcast", {rnd({2, 3, 4}, 1), rnd({3, 1}, 2)}, [](const V& x) { return x[0] + x[1]; }},
      {"sub broadcast", {rnd({4}, 3), rnd({2, 1, 4}, 4)}, [](const V& x) { return x[0] - x[1]; }},
      {"mul transposed", {rnd({3, 4}, 5), rnd({4, 3}, 6)},
       [](const V& x) { return x[0] * transpose(x[1], 0, 1); }},
      {"div", {rnd({2, 5}, 7), positive({5}, 8)}, [](const V& x) { return x[0] / x[1]; }},
      {"scalars", {rnd({6}, 9)}, [](const V& x) { return (x[0] * 3.0 + 1.5) / 2.0 - x[0]; }},
      {"neg exp tanh", {rnd({2, 3}, 10)}, [](const V& x) { return tanh(exp(neg(x[0]))); }},
      {"log sqrt pow", {positive({7}, 11)},
       [](const V& x) { return log(x[0]) + sqrt(x[0]) + pow(x[0], 2.5); }},
      // views and copies
      {"narrow select chunk", {rnd({4, 6}, 12)},
       [](const V& x) {
         auto parts = chunk(narrow(x[0], 1, 1, 4), 2, 1);
         return parts[0] * parts[1] + unsqueeze(select(x[0], 1, 2), 1);
       }},
      {"permute reshape", {rnd({2, 3, 4}, 13)},
       [](const V& x) { return reshape(permute(x[0], {2, 0, 1}), {4, 6}); }},
      {"expand squeeze", {rnd({3, 1}, 14)},
       [](const V& x) { return squeeze(sum(expand(x[0], {2, 3, 5}), {2}, true), 2); }},
      {"cat strided", {rnd({2, 3}, 15), rnd({3, 4}, 16)},
       [](const V& x) { return cat({x[0], transpose(x[1], 0, 1)}, 0); }},
      {"clone contiguous", {rnd({3, 4}, 17)},
       [](const V& x) { return clone(contiguous(transpose(x[0], 0, 1))); }},
      // dtype conversions
      {"to bf16 and back", {rnd({5, 3}, 18)},
       [](const V& x) { return to(to(x[0], DType::BF16), DType::F32) * x[0]; }},
      {"to f16 and f64", {rnd({4, 2}, 19)},
       [](const V& x) { return to(to(to(x[0], DType::F16), DType::F64), DType::F32); }},
      {"bf16 mixed add mul", {rnd({3, 4}, 20, DType::BF16), rnd({4}, 21, DType::BF16)},
       [](const V& x) { return x[0] * x[1] + x[0]; }},
      // reductions
      {"sum mean dims", {rnd({2, 3, 4}, 22)},
       [](const V& x) { return sum(x[0], {0, 2}) + mean(x[0], {0, 2}); }},
      {"sum all", {rnd({3, 5}, 23)}, [](const V& x) { return sum(x[0]) * mean(x[0]); }},
      {"max dim", {rnd({3, 5}, 24)}, [](const V& x) { return max(x[0], 1, true); }},
      {"max all", {rnd({4, 2}, 25)}, [](const V& x) { return max(x[0]); }},
      // matmul and linear
      {"matmul 2d", {rnd({3, 4}, 26), rnd({4, 5}, 27)},
       [](const V& x) { return matmul(x[0], x[1]); }},
      {"matmul batched", {rnd({2, 3, 4, 5}, 28), rnd({2, 3, 5, 2}, 29)},
       [](const V& x) { return matmul(x[0], x[1]); }},
      {"matmul batch as rows, transposed b", {rnd({2, 3, 4}, 30), rnd({5, 4}, 31)},
       [](const V& x) { return matmul(x[0], transpose(x[1], 0, 1)); }},
      {"linear bias", {rnd({2, 3, 4}, 32), rnd({4, 6}, 33), rnd({6}, 34)},
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      {"linear f64 bias", {rnd({3, 4}, 35, DType::F64), rnd({4, 2}, 36, DType::F64),
                           rnd({2}, 37, DType::F64)},
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      {"linear no bias", {rnd({5, 4}, 38), rnd({4, 3}, 39)},
       [](const V& x) { return linear(x[0], x[1]); }},
      {"linear bf16", {rnd({4, 8}, 40, DType::BF16), rnd({8, 4}, 41, DType::BF16),
                       rnd({4}, 42, DType::BF16)},
       [](const V& x) { return linear(x[0], x[1], x[2]); }},
      // fused kernels
      {"softmax dim 0", {rnd({4, 3}, 43)}, [](const V& x) { return softmax(x[0], 0); }},
      {"log_softmax", {rnd({3, 7}, 44)}, [](const V& x) { return log_softmax(x[0]); }},
      {"layernorm", {rnd({2, 3, 8}, 45), rnd({8}, 46), rnd({8}, 47)},
       [](const V& x) { return layernorm(x[0], x[1], x[2]); }},
      {"layernorm bf16", {rnd({3, 8}, 48, DType::BF16), rnd({8}, 49, DType::BF16),
                          rnd({8}, 50, DType::BF16)},
       [](const V& x) { return layernorm(x[0], x[1], x[2]); }},
      {"gelu", {rnd({3, 9}, 51)}, [](const V& x) { return gelu(x[0]); }},
      {"embedding", {rnd({10, 4}, 52), from_vector(std::vector<int32_t>{3, 1, 3, 9, 0, 3}, {2, 3})},
       [](const V& x) { return embedding(x[0], x[1]); }},
      {"cross_entropy", {rnd({6, 11}, 53), from_vector(std::vector<int32_t>{0, 10, 5, 5, 2, 7}, {6})},
       [](const V& x) { return cross_entropy(x[0], x[1]); }},
      {"causal_attention", {rnd({2, 5, 18}, 54)},
       [](const V& x) { return causal_attention(x[0], 3); }},
      {"causal_attention f64", {rnd({1, 4, 6}, 55, DType::F64)},
       [](const V& x) { return causal_attention(x[0], 2); }},
      {"dropout", {rnd({4, 16}, 56)},
       [](const V& x) {
         Generator gen(7);  // the same state on both devices: the same mask
         return dropout(x[0], 0.3, gen);
       }},
      // activation checkpointing replays the dropout mask from the host generator
      {"checkpoint with dropout", {rnd({3, 8}, 57)},
       [](const V& x) {
         auto gen = std::make_shared<Generator>(11);  // lives as long as the node's fn
         return checkpoint([gen](const Tensor& t) { return gelu(dropout(t, 0.25, *gen)); }, x[0],
                           {gen.get()});
       }},
      // one leaf reached by three paths: the engine accumulates on the device
      {"gradient accumulation", {rnd({2, 4}, 58)},
       [](const V& x) { return x[0] * x[0] + sum(x[0], {1}, true) * x[0]; }},
  };
  return cases;
}

}  // namespace

TEST_CASE("every op's forward and backward on Sim equals the CPU op bit for bit", "[device]") {
  for (const OpCase& c : op_cases()) check_op(c);
}

TEST_CASE("in-place ops on Sim equal the CPU's", "[device]") {
  NoGradGuard no_grad;
  Tensor base = rnd({3, 4}, 60), src = rnd({4, 3}, 61);
  auto run = [&](Device d) {
    std::vector<Tensor> out;
    Tensor a = base.to(d).to(Device::CPU).to(d);  // a fresh copy on d
    a = clone(a);
    fill_(a, 0.25);
    out.push_back(clone(a));
    Tensor b = clone(base.to(d));
    copy_(b, transpose(src.to(d), 0, 1));  // strided source
    out.push_back(clone(b));
    Tensor h = zeros({3, 4}, DType::BF16, d);
    copy_(h, base.to(d));  // f32 -> bf16 rounding on the device
    out.push_back(to(h, DType::F32));
    Tensor c = clone(base.to(d));
    add_(c, h, -0.5);  // a bf16 source into f32
    add_(c, transpose(src.to(d), 0, 1), 2.0);
    out.push_back(c);
    mul_(c, 1.75);
    out.push_back(clone(c));
    mul_(h, 0.3);  // bf16: in f32, rounded once
    out.push_back(to(h, DType::F32));
    Tensor from_host = zeros({4, 3}, DType::F64, d);
    copy_(from_host, src);  // a CPU source into a device tensor, converting
    out.push_back(from_host);
    return out;
  };
  std::vector<Tensor> c = run(Device::CPU), s = run(Device::Sim);
  for (size_t i = 0; i < c.size(); ++i)
    require_bitwise(c[i], s[i], "in-place step " + std::to_string(i));
}

TEST_CASE("factories take a device and *_like keeps it", "[device]") {
  const size_t before = sim_bytes_allocated();
  Tensor z = zeros({2, 3}, DType::F32, Device::Sim);
  Tensor o = ones({2, 3}, DType::F64, Device::Sim);
  Tensor f = full({4}, 2.5, DType::BF16, Device::Sim);
  CHECK(z.device() == Device::Sim);
  CHECK(zeros_like(o).device() == Device::Sim);
  CHECK(ones_like(f).device() == Device::Sim);
  CHECK(sim_bytes_allocated() >= before + 24 + 48 + 8);
  CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  CHECK(o.to_vector() == std::vector<double>(6, 1.0));
  CHECK(f.to_vector() == std::vector<double>(4, 2.5));
  CHECK(from_vector({1.0, 2.0}, {2}).device() == Device::CPU);
}

TEST_CASE("an f64 gradcheck through the device path", "[device]") {
  Tensor x = rnd({2, 3, 4}, 70, DType::F64).to(Device::Sim);
  Tensor w = rnd({4, 6}, 71, DType::F64).to(Device::Sim);
  Tensor b = rnd({6}, 72, DType::F64).to(Device::Sim);
  Tensor ln_w = rnd({6}, 73, DType::F64).to(Device::Sim);
  Tensor ln_b = rnd({6}, 74, DType::F64).to(Device::Sim);
  Tensor targets = from_vector(std::vector<int32_t>{1, 0, 5, 3, 2, 4}, {6}).to(Device::Sim);
  for (Tensor* t : {&x, &w, &b, &ln_w, &ln_b}) t->set_requires_grad(true);
  auto f = [&](const std::vector<Tensor>& in) {
    Tensor h = gelu(layernorm(linear(in[0], in[1], in[2]), in[3], in[4]));  // (2, 3, 6)
    Tensor a = causal_attention(h, 2);                                      // (2, 3, 2)
    Tensor logits = reshape(cat({h, a}, -1), {6, 8});
    return add(cross_entropy(logits, in[5]), mean(max(h, -1)));
  };
  GradcheckResult r = gradcheck(f, {x, w, b, ln_w, ln_b, targets});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(x.grad().device() == Device::Sim);
}

TEST_CASE("a GPT forward and backward on Sim equals the CPU bit for bit", "[device][gpt]") {
  GPTConfig cfg;
  cfg.vocab_size = 64;
  cfg.block_size = 16;
  cfg.n_layer = 2;
  cfg.n_head = 4;
  cfg.n_embd = 32;
  cfg.dropout = 0.1;  // embedding and residual dropout: masks drawn on the host, moved
  GPT cpu(cfg, 5), sim(cfg, 5);
  sim.to(Device::Sim);
  for (const Tensor& p : sim.parameters()) REQUIRE(p.device() == Device::Sim);
  Generator gen(3);
  std::vector<int32_t> tokens(2 * 16);
  for (int32_t& t : tokens) t = int32_t(gen.next_u64() % 64);
  Tensor idx = from_vector(tokens, {2, 16});
  Tensor targets = from_vector(std::vector<int32_t>(tokens.rbegin(), tokens.rend()), {2, 16});
  Tensor lc = cpu.loss(idx, targets);
  Tensor ls = sim.loss(idx.to(Device::Sim), targets.to(Device::Sim));
  require_bitwise(lc, ls, "loss");
  lc.backward();
  ls.backward();
  auto pc = cpu.named_parameters(), ps = sim.named_parameters();
  SampleOptions opts;
  opts.tokens = 8;
  const std::string prompt = "\x05\x21";  // byte tokens below the vocabulary of 64
  CHECK(generate(sim, prompt, opts) == generate(cpu, prompt, opts));  // tokens go to the device
  for (size_t i = 0; i < pc.size(); ++i)
    require_bitwise(pc[i].second.grad(), ps[i].second.grad(), pc[i].first);
}

TEST_CASE("Module::to moves parameters keeping their identity", "[device]") {
  GPTConfig cfg;
  cfg.vocab_size = 16;
  cfg.block_size = 4;
  cfg.n_layer = 1;
  cfg.n_head = 2;
  cfg.n_embd = 8;
  GPT m(cfg, 1);
  std::vector<Tensor> before = m.parameters();
  std::vector<std::vector<double>> values;
  for (const Tensor& p : before) values.push_back(p.to_vector());
  m.to(Device::Sim);
  std::vector<Tensor> after = m.parameters();
  for (size_t i = 0; i < before.size(); ++i) {
    CHECK(after[i].same(before[i]));
    CHECK(before[i].device() == Device::Sim);
    CHECK(before[i].requires_grad());
  }
  m.to(Device::CPU);
  for (size_t i = 0; i < before.size(); ++i) CHECK(before[i].to_vector() == values[i]);
}

TEST_CASE("host access to a Sim tensor is an ms::Error", "[device]") {
  Tensor s = ones({2, 2}, DType::F32, Device::Sim);
  REQUIRE_THROWS_WITH(s.host_data<float>(), Catch::Contains("host access to a sim tensor"));
  REQUIRE_THROWS_WITH(s.host_raw_data(), Catch::Contains("host access to a sim tensor"));
  Generator gen(1);
  DropoutMask m = dropout_mask_to(draw_dropout_mask({4}, 0.5, gen), Device::Sim);
  REQUIRE_THROWS_WITH(m.host_data(), Catch::Contains("host access to a sim buffer"));
  // Ops refuse tensors on two devices.
  REQUIRE_THROWS_WITH(add(s, ones({2, 2})), Catch::Contains("add: tensors on different devices"));
  // Attention dropout has no CUDA kernel: Sim refuses it as a GPU would.
  Tensor qkv = rnd({1, 3, 6}, 80).to(Device::Sim);
  REQUIRE_THROWS_WITH(causal_attention(qkv, 2, 0.1, gen),
                      Catch::Contains("causal_attention: attention dropout"));
}

namespace {

// A planted bug: an op that calls a cpu:: kernel without its device switch.
Tensor planted_gelu_without_switch(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  cpu::gelu_forward<float>(out.device_data<float>(), x.device_data<float>(), x.numel());
  return out;
}

// dx = 2·g by a host loop: fine for CPU tensors, the bug for device ones.
Tensor host_loop_twice(const Tensor& g) {
  Tensor gc = contiguous(g);
  Tensor dx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
  const float* pg = gc.host_data<float>();
  float* pd = dx.host_data<float>();
  for (int64_t i = 0; i < gc.numel(); ++i) pd[i] = 2 * pg[i];
  return dx;
}

// A planted bug in a backward closure: a host loop over the gradient.
Tensor planted_host_loop_in_backward(const Tensor& x) {
  Tensor out = mul(detach(x), 2.0);
  record(out, "planted_op", {x},
         [](const Tensor& g) { return std::vector<Tensor>{host_loop_twice(g)}; });
  return out;
}

}  // namespace

TEST_CASE("a planted host access in a device path is an ms::Error naming the op", "[device]") {
  Tensor xc = rnd({5}, 90);
  // On the CPU the planted code runs: the bug shows only on a device.
  CHECK(planted_gelu_without_switch(xc).numel() == 5);
  Tensor leaf_c = detach(clone(xc));
  leaf_c.set_requires_grad(true);
  sum(planted_host_loop_in_backward(leaf_c)).backward();
  CHECK(leaf_c.grad().to_vector() == std::vector<double>(5, 2.0));
  Tensor xs = xc.to(Device::Sim);
  REQUIRE_THROWS_WITH(planted_gelu_without_switch(xs),
                      Catch::Contains("outside an op's device switch") &&
                          Catch::Contains("planted_gelu_without_switch"));
  Tensor leaf = xc.to(Device::Sim);
  leaf = detach(leaf);
  leaf.set_requires_grad(true);
  Tensor y = sum(planted_host_loop_in_backward(leaf));
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("host access to a sim tensor") &&
                                        Catch::Contains("during planted_op"));
}
