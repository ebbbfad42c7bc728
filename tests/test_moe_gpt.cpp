// MoE blocks inside the GPT (nn/gpt.h, nn/moe.h): parameter names, l_aux in
// the training loss, one expert equal to the dense model, the safetensors
// round trip; and `minispeed train` with MoE: bad flags, the step line and
// load table, checkpoints that resume bit-exactly and consolidate to the
// --save-weights file.
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "autograd/grad_mode.h"
#include "catch_compat.h"
#include "nn/moe.h"
#include "parallel/engine/config.h"
#include "tests/cli_run.h"
#include "tests/temp_dir.h"

using namespace ms;
using ms::test::check_one_line_error;
using ms::test::run_minispeed;

namespace {

GPTConfig moe_gpt(int64_t E, int64_t every, int64_t k) {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 16, c.block_size = 8;
  c.moe.experts = E, c.moe.every = every, c.moe.top_k = k;
  return c;
}

std::pair<Tensor, Tensor> batch() {
  std::vector<int32_t> x, y;
  for (int i = 0; i < 16; ++i) x.push_back((i * 37) % 256), y.push_back((i * 53 + 1) % 256);
  return {from_vector(x, {2, 8}), from_vector(y, {2, 8})};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("MoE blocks: every K-th block, experts and router under mlp", "[moe][gpt]") {
  GPT model(moe_gpt(3, 2, 1), 1);
  std::set<std::string> names;
  for (auto& [name, p] : model.named_parameters()) names.insert(name);
  CHECK(names.count("h.0.mlp.c_fc.weight"));  // block 0 stays dense
  CHECK(names.count("h.1.mlp.router.weight"));
  CHECK(names.count("h.1.mlp.experts.2.c_proj.bias"));
  CHECK(!names.count("h.1.mlp.c_fc.weight"));
  CHECK(model.parameter("h.1.mlp.router.weight").shape() == Shape{16, 3});
  // Experts start as copies of one MLP, as DeepSpeed deep-copies its expert.
  CHECK(model.parameter("h.1.mlp.experts.0.c_fc.weight").to_vector() ==
        model.parameter("h.1.mlp.experts.2.c_fc.weight").to_vector());
}

TEST_CASE("the training loss is cross-entropy + coef · l_aux; eval's is cross-entropy",
          "[moe][gpt]") {
  GPTConfig cfg = moe_gpt(4, 1, 2);
  cfg.moe.aux_loss_coef = 0.5;
  GPT model(cfg, 2);
  auto [x, y] = batch();
  model.eval();
  const double ce = model.loss(x, y).item();
  model.train();
  const double total = model.loss(x, y).item();
  double aux = 0;
  for (Module* m : model.modules())
    if (auto* moe = dynamic_cast<MoE*>(m)) {
      MoELoad l = moe->take_step_load();
      aux += l.aux_sum;
    }
  CHECK(aux > 1.9);  // two layers, each l_aux >= about 1 (1 is perfect balance)
  CHECK(std::fabs(total - (ce + 0.5 * aux)) < 1e-5);
  // The router learns from l_aux: with the cross-entropy's gradient alone it would differ.
  model.zero_grad();
  model.loss(x, y).backward();
  Tensor with_aux = clone(model.parameter("h.0.mlp.router.weight").grad());
  model.zero_grad();
  model.eval();
  model.loss(x, y).backward();
  CHECK(!allclose(with_aux, model.parameter("h.0.mlp.router.weight").grad(), 1e-6, 1e-9));
}

TEST_CASE("a GPT whose MoE has one expert, top-1, no dropping, no aux is the dense GPT",
          "[moe][gpt]") {
  GPTConfig cfg = moe_gpt(1, 1, 1);
  cfg.moe.drop_tokens = false;
  cfg.moe.aux_loss_coef = 0;
  GPT moe(cfg, 3);
  GPTConfig dense_cfg = cfg;
  dense_cfg.moe = MoEConfig{};
  GPT dense(dense_cfg, 4);
  {
    NoGradGuard no_grad;
    for (auto& [name, p] : dense.named_parameters()) {
      std::string from = name;
      if (auto at = from.find(".mlp."); at != std::string::npos) from.insert(at + 5, "experts.0.");
      copy_(p, moe.parameter(from));
    }
  }
  auto [x, y] = batch();
  Tensor a = moe.loss(x, y), b = dense.loss(x, y);
  CHECK(a.item() == b.item());
  a.backward();
  b.backward();
  CHECK(moe.parameter("h.1.mlp.experts.0.c_fc.weight").grad().to_vector() ==
        dense.parameter("h.1.mlp.c_fc.weight").grad().to_vector());
  CHECK(moe.parameter("wte.weight").grad().to_vector() ==
        dense.parameter("wte.weight").grad().to_vector());
}

TEST_CASE("safetensors round trip of an MoE GPT: experts, router and gate settings",
          "[moe][gpt][weights]") {
  test::TempDir tmp("moe");
  GPTConfig cfg = moe_gpt(3, 2, 2);
  cfg.moe.capacity_factor = 1.25, cfg.moe.min_capacity = 2, cfg.moe.drop_tokens = false;
  GPT model(cfg, 5);
  {  // distinct experts, so a mixed-up name would show
    NoGradGuard no_grad;
    Generator gen(6);
    for (auto& [name, p] : model.named_parameters()) copy_(p, randn(p.shape(), gen));
  }
  const std::string path = tmp.file("moe.safetensors");
  model.save_safetensors(path);
  std::shared_ptr<GPT> back = GPT::from_safetensors(path);
  const MoEConfig& m = back->config().moe;
  CHECK(m.experts == 3);
  CHECK(m.every == 2);
  CHECK(m.top_k == 2);
  CHECK(m.capacity_factor == 1.25);
  CHECK(m.min_capacity == 2);
  CHECK(!m.drop_tokens);
  auto a = model.named_parameters(), b = back->named_parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(a[i].second.to_vector() == b[i].second.to_vector());
  }
  GPT fresh(cfg, 7);
  fresh.load_safetensors(path);
  auto [x, y] = batch();
  model.eval(), fresh.eval();
  CHECK(model.loss(x, y).item() == fresh.loss(x, y).item());
}

TEST_CASE("train --moe-*: bad values are one-line errors naming the flag", "[moe][cli]") {
  const std::string t =
      "train --steps 1 --n-layer 2 --n-embd 32 --seq-len 8 --batch-size 2 --eval-every 0 ";
  check_one_line_error(t + "--moe-experts 1 --moe-top-k 2",
                       "--moe-top-k 2 exceeds --moe-experts 1");
  check_one_line_error(t + "--moe-experts 2 --moe-top-k 3", "--moe-top-k must be 1");
  check_one_line_error(t + "--moe-experts 2 --capacity-factor 0", "--capacity-factor must be");
  check_one_line_error(t + "--moe-experts 2 --capacity-factor nan", "--capacity-factor must be");
  check_one_line_error(t + "--moe-experts -1", "--moe-experts must be >= 0");
  check_one_line_error(t + "--moe-experts 2 --moe-every 3",
                       "--moe-every must be in [1, --n-layer]");
  check_one_line_error(t + "--moe-experts 2 --moe-min-capacity -1", "--moe-min-capacity");
  check_one_line_error(t + "--moe-experts 2 --moe-drop-tokens maybe",
                       "--moe-drop-tokens must be on or off");
  check_one_line_error(t + "--moe-experts 2 --moe-aux-loss-coef -1", "--moe-aux-loss-coef");
  check_one_line_error(t + "--moe-top-k 2", "need --moe-experts");
  check_one_line_error(t + "--moe-experts 2 --zero-stage 3", "ZeRO-3 with MoE is refused");
  check_one_line_error(t + "--moe-experts 2 --checkpoint-activations", "--checkpoint-activations");
}

TEST_CASE("train --moe-experts: step line, load table, resume and consolidate", "[moe][cli]") {
  test::TempDir tmp("moecli");
  const std::string run =
      "train --moe-experts 4 --moe-every 2 --moe-top-k 2 --n-layer 2 --n-embd 32 --n-head 4 "
      "--seq-len 16 --batch-size 4 --eval-every 0 --sample-tokens 0 --steps 4 --checkpoint-dir " +
      tmp.file("ck") + " ";
  auto full = run_minispeed(run + "--save-every 2 --save-weights " + tmp.file("w.safetensors"));
  INFO(full.output);
  REQUIRE(full.code == 0);
  CHECK(full.output.find("| l_aux ") != std::string::npos);
  CHECK(full.output.find("| dropped ") != std::string::npos);
  CHECK(full.output.find("expert load over the run") != std::string::npos);
  CHECK(full.output.find("h.1.mlp: e0 ") != std::string::npos);
  auto resumed =
      run_minispeed(run + "--resume global_step2 --save-weights " + tmp.file("r.safetensors"));
  INFO(resumed.output);
  REQUIRE(resumed.code == 0);
  CHECK(slurp(tmp.file("w.safetensors")) == slurp(tmp.file("r.safetensors")));
  auto cons = run_minispeed("consolidate " + tmp.file("ck") + " " + tmp.file("c.safetensors"));
  INFO(cons.output);
  REQUIRE(cons.code == 0);
  CHECK(slurp(tmp.file("w.safetensors")) == slurp(tmp.file("c.safetensors")));
  // A resume must build the same experts.
  auto other = run_minispeed(run + "--resume global_step2 --moe-experts 2");
  CHECK(other.code != 0);
  CHECK(other.output.find("--moe-experts") != std::string::npos);
}

TEST_CASE("ds_config moe section: parsed, checked, and the same as the flags", "[moe][ds_config]") {
  DsConfig c = parse_ds_config(
      R"({"train_micro_batch_size_per_gpu": 2, "moe": {"num_experts": 4, "expert_interval": 1,
          "k": 2, "capacity_factor": 1.5, "min_capacity": 0, "drop_tokens": false,
          "aux_loss_coef": 0.1}})",
      1);
  CHECK(c.moe.num_experts == 4);
  CHECK(c.moe.expert_interval == 1);
  CHECK(c.moe.k == 2);
  CHECK(c.moe.capacity_factor == 1.5);
  CHECK(c.moe.min_capacity == 0);
  CHECK(!c.moe.drop_tokens);
  CHECK(c.moe.aux_loss_coef == 0.1);
  CHECK(c.moe.ep_size == 1);  // expert parallelism off unless asked
  CHECK(parse_ds_config(R"({"train_micro_batch_size_per_gpu": 2, "moe": {"num_experts": 4,
                           "ep_size": 2}})",
                        2)
            .moe.ep_size == 2);
  CHECK_THROWS_WITH(
      parse_ds_config(R"({"train_micro_batch_size_per_gpu": 2, "moe": {"ep_size": 0}})", 1),
      Catch::Contains("moe.ep_size"));
  CHECK_THROWS_WITH(
      parse_ds_config(R"({"train_micro_batch_size_per_gpu": 2, "moe": {"num_experts": 1, "k": 2}})",
                      1),
      Catch::Contains("moe.k") && Catch::Contains("exceeds moe.num_experts 1"));
  CHECK_THROWS_WITH(
      parse_ds_config(R"({"train_micro_batch_size_per_gpu": 2, "moe": {"capacity_factor": 0}})", 1),
      Catch::Contains("moe.capacity_factor"));
  CHECK_THROWS_WITH(
      parse_ds_config(R"({"train_micro_batch_size_per_gpu": 2, "moe": {"use_rts": true}})", 1),
      Catch::Contains("moe.use_rts") && Catch::Contains("does not implement"));

  test::TempDir tmp("moecfg");
  const std::string cfg = tmp.file("ds.json");
  std::ofstream(cfg)
      << R"({"train_micro_batch_size_per_gpu": 2, "moe": {"num_experts": 2, "k": 2}})";
  const std::string t =
      "train --config " + cfg +
      " --steps 1 --n-layer 2 --n-embd 32 --seq-len 8 --eval-every 0 --sample-tokens 0 ";
  auto ok = run_minispeed(t);
  INFO(ok.output);
  CHECK(ok.code == 0);
  CHECK(ok.output.find("mixture of experts: 2 experts, top-2 in h.1") != std::string::npos);
  check_one_line_error(t + "--moe-top-k 1", "--moe-top-k 1 contradicts moe.k 2");
  // --ep (moe.ep_size) must divide the data-parallel size: 1 in one process.
  check_one_line_error(t + "--ep 2", "--ep 2 does not divide the data-parallel size 1");
}
