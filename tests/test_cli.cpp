// The `minispeed` program as a user runs it: errors are one line naming the
// flag, and training through the CLI matches PyTorch like the library does.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "catch_compat.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"

using namespace ms;

namespace {

struct Run {
  int code;
  std::string output;  // stdout and stderr
};

std::string build_dir() {
  const char* dir = std::getenv("MS_BUILD_DIR");
  return dir ? dir : "build";
}

Run run(const std::string& args) {
  // minispeed starts MPI; under SAN=1 Open MPI's unloaded plugins show up as
  // leaks LeakSanitizer cannot attribute (see the Makefile), so the child runs
  // without leak detection. No effect on a normal build.
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 " + build_dir() + "/minispeed " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void check_error(const std::string& args, const std::string& expect) {
  Run r = run(args);
  INFO("minispeed " << args << "\n" << r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find(expect) != std::string::npos);
  // One line: the message, nothing else (no MPI banner, no stack).
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK(r.output.rfind("error: ", 0) == 0);
}

}  // namespace

TEST_CASE("bad flags and values are one-line errors naming the flag", "[cli]") {
  check_error("train --bogus 1", "unknown flag --bogus");
  check_error("train --batch-szie 2", "did you mean --batch-size?");
  check_error("train --n-embd 30 --n-head 4",
              "--n-embd 30 must be a positive multiple of --n-head 4");
  check_error("train --steps many", "--steps must be an integer, got 'many'");
  check_error("train --data /no/such/file", "--data: cannot open '/no/such/file'");
  check_error("train --optimizer adam", "valid: sgd, adamw");
  check_error("train --schedule linear", "valid: constant, cosine");
  check_error("train --zero-stage 4", "--zero-stage must be 0, 1, 2 or 3");
  check_error("train --init-from tests/ref/gpt_init.safetensors --seq-len 32",
              "--seq-len 32 exceeds");
  check_error("train --batch-size", "--batch-size needs a value");
  check_error("frobnicate", "unknown command 'frobnicate'");
  check_error("sample", "--weights FILE is required");
  std::string tiny = build_dir() + "/tiny_corpus.txt";
  {
    std::FILE* f = std::fopen(tiny.c_str(), "w");
    std::fputs("to be or not to be", f);
    std::fclose(f);
  }
  check_error("train --data " + tiny + " --batch-size 4 --seq-len 8", "fewer than one batch");
}

TEST_CASE("--help lists every flag with its default", "[cli]") {
  Run r = run("train --help");
  CHECK(r.code == 0);
  for (const char* flag :
       {"--data",       "--n-layer",      "--n-head",     "--n-embd",       "--seq-len",
        "--batch-size", "--steps",        "--lr",         "--schedule",     "--warmup",
        "--optimizer",  "--weight-decay", "--grad-clip",  "--dropout",      "--seed",
        "--init-from",  "--save-weights", "--eval-every", "--sample-every", "--zero-stage"})
    CHECK(r.output.find(flag) != std::string::npos);
  CHECK(r.output.find("(default: data/tinyshakespeare.txt)") != std::string::npos);
}

TEST_CASE("training through the CLI matches PyTorch after 3 SGD steps", "[cli][torch]") {
  std::string out = build_dir() + "/cli_sgd3.safetensors";
  std::filesystem::remove(out);
  Run r = run("train --init-from tests/ref/gpt_init.safetensors --save-weights " + out +
              " --steps 3 --batch-size 2 --seq-len 16 --optimizer sgd --lr 0.1 --momentum 0.9"
              " --weight-decay 0.01 --schedule constant --grad-clip 0 --eval-every 0"
              " --sample-tokens 0");
  INFO(r.output);
  REQUIRE(r.code == 0);
  auto ref = load_safetensors("tests/ref/gpt_ref.safetensors").tensors;
  auto got = load_safetensors(out).tensors;
  for (auto& [name, t] : got) {
    REQUIRE(ref.count("sgd3." + name));
    std::vector<double> a = t.to_vector(), b = ref["sgd3." + name].to_vector();
    double scale = 0, worst = 0;
    for (double x : b) scale = std::max(scale, std::fabs(x));
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / scale);
    INFO(name << ": worst relative error " << worst);
    CHECK(worst <= 1e-5);
  }
  CHECK(got.size() == 28);
  // The log reports PyTorch's first loss (5.495689).
  CHECK(r.output.find("loss 5.4957") != std::string::npos);
  CHECK(std::filesystem::exists(build_dir() + "/cli_sgd3.loss.csv"));
  CHECK(std::filesystem::exists(build_dir() + "/cli_sgd3.loss.svg"));
}
