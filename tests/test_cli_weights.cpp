// `minispeed train` with weights files: a bad --save-weights path fails before
// training, and --init-from honours the flags the tensors cannot answer.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "catch_compat.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"
#include "autograd/ops.h"
#include "tests/cli_run.h"
#include "tests/temp_dir.h"

using namespace ms;
using ms::test::check_one_line_error;
using ms::test::CliRun;
using ms::test::run_minispeed;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

const std::string kTiny =
    "train --steps 1 --batch-size 2 --seq-len 8 --eval-every 0 --sample-tokens 0 ";

// Weights of a 2-layer, n_embd 32 GPT; without metadata like Hugging Face files.
std::string weights(const TempDir& tmp, const std::map<std::string, std::string>& meta = {}) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 32, cfg.block_size = 16;
  GPT model(cfg, 1);
  std::map<std::string, Tensor> w;
  for (auto& [name, p] : model.named_parameters()) w[name] = p;
  std::string path = tmp.file(meta.empty() ? "bare.safetensors" : "meta.safetensors");
  save_safetensors(path, w, meta);
  return path;
}

}  // namespace

// Regression: the path was first looked at after training, so a run ended in
// "cannot rename" (a directory) or replaced a FIFO or device (/dev/null as root).
TEST_CASE("train: a --save-weights path that cannot be written fails before training",
          "[cli][save]") {
  TempDir tmp;
  const std::string fifo = tmp.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  check_one_line_error(
      kTiny + "--save-weights " + fifo,
      "cannot save to '" + fifo + "': exists and is not a regular file (it is a FIFO)");
  CHECK(fs::is_fifo(fifo));
  check_one_line_error(kTiny + "--save-weights " + tmp.dir.string(), "is a directory");
  const std::string file = tmp.file("f");
  std::fclose(std::fopen(file.c_str(), "w"));
  check_one_line_error(kTiny + "--save-weights " + file + "/w.safetensors",
                       "parent '" + file + "' is a regular file, not a directory");
  // The loss curve written beside the weights is checked too.
  fs::create_directory(tmp.file("w.loss.svg"));
  check_one_line_error(kTiny + "--save-weights " + tmp.file("w.safetensors"),
                       "cannot save to '" + tmp.file("w.loss.svg") + "': is a directory");
  // Missing directories are created, as before.
  CliRun ok = run_minispeed(kTiny + "--n-layer 1 --n-embd 16 --n-head 2 --save-weights " +
                            tmp.file("new/dir/w.safetensors"));
  INFO(ok.output);
  CHECK(ok.code == 0);
  CHECK(fs::is_regular_file(tmp.file("new/dir/w.safetensors")));
  CHECK(fs::is_regular_file(tmp.file("new/dir/w.loss.csv")));
}

// Regression: --n-head and --dropout were silently ignored with --init-from;
// a file without metadata got n_embd / 64 heads without a word.
TEST_CASE("train --init-from: --n-head, --dropout and the head-count guess", "[cli][weights]") {
  TempDir tmp;
  const std::string bare = weights(tmp), with_meta = weights(tmp, {{"n_head", "4"}});
  CliRun guess = run_minispeed(kTiny + "--init-from " + bare);
  INFO(guess.output);
  CHECK(guess.code == 0);
  CHECK(guess.output.find("note: GPT weights '" + bare +
                          "': no n_head in the metadata; assuming GPT-2's 64-wide heads: 1 "
                          "head(s) for n_embd 32; --n-head sets it") != std::string::npos);
  CHECK(guess.output.find("n_head=1") != std::string::npos);

  CliRun two = run_minispeed(kTiny + "--init-from " + bare + " --n-head 2");
  INFO(two.output);
  CHECK(two.code == 0);
  CHECK(two.output.find("n_head=2") != std::string::npos);
  CHECK(two.output.find("note:") == std::string::npos);

  check_one_line_error(kTiny + "--init-from " + bare + " --n-head 3",
                       "--n-head 3 does not divide n_embd 32");
  check_one_line_error(kTiny + "--init-from " + with_meta + " --n-head 2",
                       "--n-head 2 contradicts the file's metadata n_head 4");
  check_one_line_error(kTiny + "--init-from " + bare + " --n-layer 3",
                       "--n-layer 3 contradicts --init-from's model");
  check_one_line_error(kTiny + "--init-from " + bare + " --dropout 1",
                       "--dropout must be in [0, 1)");
  CHECK(run_minispeed(kTiny + "--init-from " + with_meta + " --n-head 4").code == 0);

  // Dropout is training-time noise: the same step's loss must change with it.
  auto first_loss = [&](const std::string& extra) {
    CliRun r = run_minispeed(kTiny + "--init-from " + with_meta + extra);
    INFO(r.output);
    REQUIRE(r.code == 0);
    size_t at = r.output.find("| loss ");
    REQUIRE(at != std::string::npos);
    return r.output.substr(at, 14);
  };
  CHECK(first_loss(" --dropout 0.5") != first_loss(""));
  CHECK(first_loss(" --dropout 0") == first_loss(""));
}

// Regression: in a 16-bit run --save-weights wrote the model's bf16 copies
// while `consolidate` wrote the fp32 masters. Both now write the masters in
// fp32 (DeepSpeed's zero_to_fp32.py gives fp32): the same file, byte for byte.
TEST_CASE("train --bf16: --save-weights writes the fp32 masters, as consolidate does (1 and 2 ranks)",
          "[cli][weights]") {
  TempDir tmp;
  for (int stage : {0, 2}) {
    INFO("ZeRO stage " << stage);
    const std::string tag = stage == 0 ? "z0" : "z2";
    const std::string saved = tmp.file(tag + ".safetensors"), ckpt = tmp.file(tag + "_ckpt"),
                      merged = tmp.file(tag + "_merged.safetensors");
    // ZeRO-2 on 2 ranks: each holds half the masters, gathered for the file.
    const char* env = std::getenv("MPIRUN");
    const std::string launcher =
        stage == 0 ? "" : std::string(env ? env : "mpirun --oversubscribe") + " -np 2 ";
    CliRun run = run_minispeed(kTiny + "--n-layer 1 --n-embd 16 --n-head 2 --steps 2 --bf16 " +
                                   "--zero-stage " + std::to_string(stage) + " --save-weights " +
                                   saved + " --checkpoint-dir " + ckpt + " --save-every 2",
                               launcher);
    INFO(run.output);
    REQUIRE(run.code == 0);
    CliRun cons = run_minispeed("consolidate " + ckpt + " " + merged);
    INFO(cons.output);
    REQUIRE(cons.code == 0);
    SafetensorsFile a = load_safetensors(saved), b = load_safetensors(merged);
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (const auto& [name, t] : a.tensors) {
      INFO(name);
      CHECK(t.dtype() == DType::F32);
      CHECK(t.to_vector() == b.tensors.at(name).to_vector());
    }
    // The same file, byte for byte (metadata included).
    std::ifstream fa(saved, std::ios::binary), fb(merged, std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(fa), {}) ==
          std::string(std::istreambuf_iterator<char>(fb), {}));
    // The masters after 2 AdamW steps are not all bf16-representable.
    bool beyond_bf16 = false;
    for (double x : a.tensors.at("h.0.mlp.c_fc.weight").to_vector())
      beyond_bf16 |= static_cast<double>(static_cast<float>(x)) !=
                     to(full({}, x), DType::BF16).to_vector()[0];
    CHECK(beyond_bf16);
    CHECK(a.metadata.at("format") == "pt");
  }
}

// Regression: `consolidate CKPT CKPT/rank_00000.safetensors` replaced a rank
// file of the checkpoint it was reading.
TEST_CASE("consolidate refuses an output inside its input checkpoint", "[cli][weights]") {
  TempDir tmp;
  const std::string ckpt = tmp.file("ckpt");
  CliRun run = run_minispeed(kTiny + "--n-layer 1 --n-embd 16 --n-head 2 --steps 1 " +
                             "--checkpoint-dir " + ckpt + " --save-every 1");
  INFO(run.output);
  REQUIRE(run.code == 0);
  const std::string tag = ckpt + "/global_step1", rank0 = tag + "/rank_00000.safetensors";
  REQUIRE(fs::is_regular_file(rank0));
  const std::string before = [&] {
    std::ifstream f(rank0, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }();
  fs::create_directory(tmp.file("elsewhere"));
  fs::create_directory_symlink(tag, tmp.file("link"));
  // Directly, through "..", through a symbolic link to the tag folder, a new
  // file inside the checkpoint folder, and the tag folder named as input.
  for (const auto& [in, out] : std::vector<std::pair<std::string, std::string>>{
           {ckpt, rank0},
           {ckpt, tmp.file("elsewhere") + "/../ckpt/global_step1/rank_00000.safetensors"},
           {ckpt, tmp.file("link") + "/rank_00000.safetensors"},
           {ckpt, ckpt + "/merged.safetensors"},
           {tag, tag + "/rank_00000.json"}}) {
    INFO(in << " -> " << out);
    CliRun r = run_minispeed("consolidate " + in + " " + out);
    CHECK(r.code == 1);
    CHECK(r.output.find("is inside the input checkpoint '") != std::string::npos);
    CHECK(r.output.find("'" + out + "'") != std::string::npos);
    CHECK(r.output.find("'" + in + "'") != std::string::npos);
  }
  std::ifstream f(rank0, std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(f), {}) == before);
  CHECK(!fs::exists(ckpt + "/merged.safetensors"));
  // Beside the checkpoint is fine.
  CHECK(run_minispeed("consolidate " + ckpt + " " + tmp.file("elsewhere/w.safetensors")).code == 0);
}
