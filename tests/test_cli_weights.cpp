// `minispeed train` with weights files: a bad --save-weights path fails before
// training, and --init-from honours the flags the tensors cannot answer.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "catch_compat.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"
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
