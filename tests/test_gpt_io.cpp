// GPT::from_safetensors on files from outside: the tensors fix the shape, the
// metadata must agree with them, the head count follows explicit rules, and
// suspicious weights are reported, never silently used.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "autograd/grad_mode.h"
#include "catch_compat.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"
#include "tests/temp_dir.h"

using namespace ms;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

GPTConfig small(int64_t n_embd = 32) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = n_embd, cfg.block_size = 8, cfg.vocab_size = 16;
  return cfg;
}

std::map<std::string, Tensor> weights_of(const GPT& model) {
  std::map<std::string, Tensor> out;
  for (auto& [name, p] : model.named_parameters()) out[name] = p;
  return out;
}

// A GPT's weights saved under `meta` (no metadata at all, like every Hugging
// Face file, when empty).
std::string save(const TempDir& tmp, const std::map<std::string, Tensor>& w,
                 const std::map<std::string, std::string>& meta = {}) {
  std::string path = tmp.file("w.safetensors");
  save_safetensors(path, w, meta);
  return path;
}

// What `fn` writes to stderr (fd 2, so fprintf from the library is caught).
template <typename Fn>
std::string capture_stderr(Fn fn) {
  std::fflush(stderr);
  std::FILE* tmp = std::tmpfile();
  REQUIRE(tmp != nullptr);
  int saved = ::dup(2);
  ::dup2(::fileno(tmp), 2);
  try {
    fn();
  } catch (...) {
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::fclose(tmp);
    throw;
  }
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::rewind(tmp);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, tmp)) out.append(buf, n);
  std::fclose(tmp);
  return out;
}

}  // namespace

// Regression: an 87 KB file claiming n_layer 20,000 allocated a 1.15 GB model
// (6.5 s) before failing on the first missing tensor.
TEST_CASE("metadata that disagrees with the tensors fails before allocating", "[gpt][weights]") {
  TempDir tmp;
  GPT model(small(), 1);
  auto meta = [](const std::string& key, const std::string& value) {
    std::map<std::string, std::string> m = {{"n_layer", "2"},
                                            {"n_head", "2"},
                                            {"n_embd", "32"},
                                            {"block_size", "8"},
                                            {"vocab_size", "16"}};
    m[key] = value;
    return m;
  };
  std::string path = save(tmp, weights_of(model), meta("n_layer", "20000"));
  CHECK_THROWS_WITH(GPT::from_safetensors(path), Catch::Contains(path) &&
                                                     Catch::Contains("metadata n_layer 20000") &&
                                                     Catch::Contains("blocks h.0 to h.1"));
  path = save(tmp, weights_of(model), meta("n_embd", "64"));
  CHECK_THROWS_WITH(GPT::from_safetensors(path), Catch::Contains("metadata n_embd 64") &&
                                                     Catch::Contains("wte.weight [16, 32]"));
  path = save(tmp, weights_of(model), meta("block_size", "1024"));
  CHECK_THROWS_WITH(GPT::from_safetensors(path), Catch::Contains("metadata block_size 1024"));
  path = save(tmp, weights_of(model), meta("vocab_size", "50257"));
  CHECK_THROWS_WITH(GPT::from_safetensors(path), Catch::Contains("metadata vocab_size 50257"));
  // Agreeing metadata loads.
  path = save(tmp, weights_of(model), meta("n_layer", "2"));
  CHECK(GPT::from_safetensors(path)->config().n_layer == 2);

  // Blocks that are only a name: every tensor is checked before the model exists.
  std::map<std::string, Tensor> w = weights_of(model);
  for (int i = 2; i < 1000; ++i) w["h." + std::to_string(i) + ".ln_1.weight"] = zeros({32});
  CHECK_THROWS_WITH(GPT::from_safetensors(save(tmp, w)),
                    Catch::Contains("missing tensor 'h.2.ln_1.bias'"));
  w = weights_of(model);
  for (auto it = w.begin(); it != w.end();) it = it->first.rfind("h.", 0) == 0 ? w.erase(it) : ++it;
  CHECK_THROWS_WITH(GPT::from_safetensors(save(tmp, w)), Catch::Contains("no transformer blocks"));
}

// Regression: std::stoll read "4xyz" as 4.
TEST_CASE("metadata integers are parsed strictly", "[gpt][weights]") {
  TempDir tmp;
  GPT model(small(), 1);
  for (std::string bad : {"4xyz", "", " 2", "+2", "2.0", "-2", "0", "99999999999999999999"}) {
    INFO("n_head = '" << bad << "'");
    std::string path = save(tmp, weights_of(model), {{"n_head", bad}});
    CHECK_THROWS_WITH(GPT::from_safetensors(path),
                      Catch::Contains("metadata n_head = '" + bad + "' is not a positive integer"));
  }
  std::string path = save(tmp, weights_of(model), {{"n_head", "bad\nvalue"}});
  CHECK_THROWS_WITH(GPT::from_safetensors(path), Catch::Contains("'bad\\x0avalue'"));
}

// Regression: with both spellings of a name one of them was silently dropped.
TEST_CASE("a file naming a parameter twice is an error naming both", "[gpt][weights]") {
  TempDir tmp;
  GPT model(small(), 1);
  std::map<std::string, Tensor> w = weights_of(model);
  w["transformer.wte.weight"] = zeros({16, 32});
  std::string path = save(tmp, w);
  CHECK_THROWS_WITH(GPT::from_safetensors(path), Catch::Contains("'transformer.wte.weight'") &&
                                                     Catch::Contains("'wte.weight'") &&
                                                     Catch::Contains("keep one"));
  GPT other(small(), 2);
  CHECK_THROWS_WITH(other.load_safetensors(path), Catch::Contains("'transformer.wte.weight'"));
  // The prefix alone is fine (GPT2LMHeadModel files use it everywhere).
  std::map<std::string, Tensor> prefixed;
  for (auto& [name, t] : weights_of(model)) prefixed["transformer." + name] = t;
  CHECK(GPT::from_safetensors(save(tmp, prefixed, {{"n_head", "2"}}))->config().n_embd == 32);
}

// Regression: NaN/Inf weights loaded without a word.
TEST_CASE("non-finite weights are named on stderr", "[gpt][weights]") {
  TempDir tmp;
  GPT model(small(), 1);
  std::map<std::string, Tensor> w = weights_of(model);
  Tensor bias = zeros({96});
  bias.host_data<float>()[3] = NAN;
  bias.host_data<float>()[7] = INFINITY;
  w["h.1.attn.c_attn.bias"] = bias;
  std::string path = save(tmp, w, {{"n_head", "2"}});
  std::shared_ptr<GPT> loaded;
  std::string err = capture_stderr([&] { loaded = GPT::from_safetensors(path); });
  CHECK(err.find("warning: GPT weights '" + path +
                 "': tensor 'h.1.attn.c_attn.bias' has 2 non-finite values (NaN or Inf) of 96") !=
        std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);  // one line, for the one tensor
  CHECK(std::isnan(loaded->parameter("h.1.attn.c_attn.bias").to_vector()[3]));  // loaded as is
  GPT other(small(), 2);
  err = capture_stderr([&] { other.load_safetensors(path); });
  CHECK(err.find("'h.1.attn.c_attn.bias' has 2 non-finite") != std::string::npos);
  GPT::LoadOptions quiet;
  quiet.warn_non_finite = false;  // ranks other than 0
  CHECK(capture_stderr([&] { GPT::from_safetensors(path, quiet); }).empty());
  // Finite weights: silence.
  path = save(tmp, weights_of(model), {{"n_head", "2"}});
  CHECK(capture_stderr([&] { GPT::from_safetensors(path); }).empty());
}

// The head count is not in the shapes. Rule: an explicit value wins if it
// divides n_embd and agrees with the metadata; else the metadata; else
// GPT-2's 64-wide heads, said out loud.
TEST_CASE("from_safetensors: n_head and dropout options", "[gpt][weights]") {
  TempDir tmp;
  GPT model(small(32), 1);
  const std::string bare = save(tmp, weights_of(model));  // no metadata, as HF files
  std::vector<std::string> notes;
  GPT::LoadOptions opts;
  opts.note = [&](const std::string& s) { notes.push_back(s); };

  auto guessed = GPT::from_safetensors(bare, opts);
  CHECK(guessed->config().n_head == 1);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("64-wide heads: 1 head(s) for n_embd 32") != std::string::npos);
  // Without a note sink the guess still reaches the user, on stderr.
  CHECK(capture_stderr([&] { GPT::from_safetensors(bare); }).find("note: ") == 0);

  notes.clear();
  opts.n_head = 2;
  auto two = GPT::from_safetensors(bare, opts);
  CHECK(two->config().n_head == 2);
  CHECK(notes.empty());
  // Same weights, different heads: a different function, so it must not be ignored.
  Tensor idx = from_vector({1, 2, 3, 4}, {1, 4}, DType::I32);
  NoGradGuard no_grad;
  CHECK(two->forward(idx).to_vector() != guessed->forward(idx).to_vector());

  opts.n_head = 3;
  CHECK_THROWS_WITH(GPT::from_safetensors(bare, opts),
                    Catch::Contains("requested n_head 3") && Catch::Contains("n_embd 32"));
  opts.n_head = 0;
  CHECK_THROWS_WITH(GPT::from_safetensors(bare, opts), Catch::Contains("requested n_head 0"));

  const std::string with_meta = tmp.file("meta.safetensors");
  save_safetensors(with_meta, weights_of(model), {{"n_head", "4"}});
  opts.n_head = 2;
  CHECK_THROWS_WITH(GPT::from_safetensors(with_meta, opts),
                    Catch::Contains("requested n_head 2") && Catch::Contains("metadata n_head 4"));
  opts.n_head = 4;
  CHECK(GPT::from_safetensors(with_meta, opts)->config().n_head == 4);
  opts.n_head.reset();
  CHECK(GPT::from_safetensors(with_meta, opts)->config().n_head == 4);
  CHECK(notes.empty());

  // The C/64 rule is refused when it does not divide n_embd (96 / 64 -> 1 divides; 200 -> 3 not).
  GPT wide(small(200), 1);
  std::string odd = tmp.file("odd.safetensors");
  save_safetensors(odd, weights_of(wide));
  CHECK_THROWS_WITH(GPT::from_safetensors(odd, opts),
                    Catch::Contains("give the head count explicitly"));

  opts.dropout = 0.25;
  CHECK(GPT::from_safetensors(with_meta, opts)->config().dropout == 0.25);
  opts.dropout = 1.5;
  CHECK_THROWS_WITH(GPT::from_safetensors(with_meta, opts), Catch::Contains("dropout 1.5"));
}
