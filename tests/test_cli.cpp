// The `minispeed` program as a user runs it: errors are one line naming the
// flag, and training through the CLI matches PyTorch like the library does.
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "catch_compat.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"
#include "tests/cli_run.h"

using namespace ms;

namespace {

using test::build_dir;
using test::check_one_line_error;
using test::CliRun;
using test::run_minispeed;

}  // namespace

TEST_CASE("bad flags and values are one-line errors naming the flag", "[cli]") {
  check_one_line_error("train --bogus 1", "unknown flag --bogus");
  check_one_line_error("train --batch-szie 2", "did you mean --batch-size?");
  check_one_line_error("train --n-embd 30 --n-head 4",
                       "--n-embd 30 must be a positive multiple of --n-head 4");
  check_one_line_error("train --steps many", "--steps must be an integer, got 'many'");
  check_one_line_error("train --data /no/such/file", "--data: cannot open '/no/such/file'");
  check_one_line_error("train --optimizer adam", "valid: sgd, adamw");
  check_one_line_error("train --schedule linear", "valid: constant, cosine");
  check_one_line_error("train --zero-stage 4", "--zero-stage must be 0, 1, 2 or 3");
  check_one_line_error("train --init-from tests/ref/gpt_init.safetensors --seq-len 32",
                       "--seq-len 32 exceeds");
  check_one_line_error("train --batch-size", "--batch-size needs a value");
  check_one_line_error("frobnicate", "unknown command 'frobnicate'");
  check_one_line_error("sample", "--weights FILE is required");
  std::string tiny = build_dir() + "/tiny_corpus.txt";
  {
    std::FILE* f = std::fopen(tiny.c_str(), "w");
    std::fputs("to be or not to be", f);
    std::fclose(f);
  }
  check_one_line_error("train --data " + tiny + " --batch-size 4 --seq-len 8",
                       "fewer than one batch");
}

TEST_CASE("--help lists every flag with its default", "[cli]") {
  CliRun r = run_minispeed("train --help");
  CHECK(r.code == 0);
  for (const char* flag :
       {"--data",       "--n-layer",      "--n-head",     "--n-embd",       "--seq-len",
        "--batch-size", "--steps",        "--lr",         "--schedule",     "--warmup",
        "--optimizer",  "--weight-decay", "--grad-clip",  "--dropout",      "--seed",
        "--init-from",  "--save-weights", "--eval-every", "--sample-every", "--zero-stage"})
    CHECK(r.output.find(flag) != std::string::npos);
  CHECK(r.output.find("(default: data/tinyshakespeare.txt)") != std::string::npos);
  // The collective timeout is set by the environment, so help must say so.
  CHECK(r.output.find("MS_COMM_TIMEOUT=S") != std::string::npos);
  CHECK(r.output.find("default 600; 0 = wait forever") != std::string::npos);
}

TEST_CASE("training through the CLI matches PyTorch after 3 SGD steps", "[cli][torch]") {
  std::string out = build_dir() + "/cli_sgd3.safetensors";
  std::filesystem::remove(out);
  CliRun r =
      run_minispeed("train --init-from tests/ref/gpt_init.safetensors --save-weights " + out +
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

namespace {
// A model that trains in milliseconds, so each case is about its one bad input.
const std::string kTiny =
    " --n-layer 1 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --steps 2 --eval-every 0"
    " --sample-tokens 0";

std::string mpirun() {
  const char* m = std::getenv("MPIRUN");
  return m ? m : "mpirun --oversubscribe";
}
}  // namespace

TEST_CASE("values out of range are refused naming the flag and the range", "[cli]") {
  check_one_line_error("train" + kTiny + " --lr nan", "--lr must be a finite number >= 0, got nan");
  check_one_line_error("train" + kTiny + " --lr -1", "--lr must be a finite number >= 0, got -1");
  check_one_line_error("train" + kTiny + " --min-lr inf",
                       "--min-lr must be in [0, --lr] = [0, 1e-3]");
  check_one_line_error("train" + kTiny + " --momentum -0.5",
                       "--momentum must be in [0, 1), got -0.5");
  check_one_line_error("train" + kTiny + " --weight-decay nan",
                       "--weight-decay must be a finite number");
  check_one_line_error("train" + kTiny + " --beta2 1", "--beta2 must be in [0, 1), got 1");
  check_one_line_error("train" + kTiny + " --grad-clip -1",
                       "--grad-clip must be a finite number >= 0");
  check_one_line_error("train" + kTiny + " --warmup -5",
                       "--warmup must be in [0, --steps] = [0, 2]");
  check_one_line_error(
      "train" + kTiny + " --eval-batches 0 --eval-every 1",
      "--eval-batches must be at least 1 (to skip validation use --eval-every 0), got 0");
  check_one_line_error("train" + kTiny + " --eval-batches -1 --eval-every 1",
                       "--eval-batches must be at least 1");
}

// torch.optim and DeepSpeed accept lr 0 (evaluation-only runs use it): the
// weights after 3 steps at lr 0 are the weights after 1, byte for byte.
TEST_CASE("--lr 0 is accepted and leaves the weights where they started", "[cli]") {
  std::string one = build_dir() + "/lr0_1.safetensors", three = build_dir() + "/lr0_3.safetensors";
  for (auto [steps, file] : {std::pair{1, one}, std::pair{3, three}}) {
    std::string flags = " --n-layer 1 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2"
                        " --eval-every 0 --sample-tokens 0 --lr 0 --weight-decay 0.1";
    CliRun r = run_minispeed("train" + flags + " --steps " + std::to_string(steps) +
                             " --save-weights " + file);
    INFO(r.output);
    REQUIRE(r.code == 0);
  }
  auto bytes = [](const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    REQUIRE(f);
    std::string s;
    for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
    std::fclose(f);
    return s;
  };
  CHECK(bytes(one) == bytes(three));
}

TEST_CASE("a loss that stops being finite ends training with an error naming the step", "[cli]") {
  CliRun r = run_minispeed("train" + kTiny + " --steps 5 --lr 1e30");
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find("error: training diverged: the loss is NaN at step 2") != std::string::npos);
  CHECK(r.output.find("trained 5 steps") == std::string::npos);
}

TEST_CASE("products of sizes that overflow int64 are errors not crashes", "[cli]") {
  check_one_line_error(
      "train" + kTiny + " --batch-size 4611686018427387904 --seq-len 4",
      "--batch-size × --seq-len = 4611686018427387904 × 4 (tokens per micro-step per "
      "rank) overflows a 64-bit integer");
  check_one_line_error("train" + kTiny + " --steps 4611686018427387904 --grad-accum 4",
                       "--steps × --grad-accum × ranks = 4611686018427387904 × 4 × 1");
  check_one_line_error("train" + kTiny + " --n-layer 4611686018427387904 --n-embd 1024 --n-head 1",
                       "(parameters of the model) overflows");
  check_one_line_error("estimate-memory --params 9223372036854775807",
                       "--params 9223372036854775807 is too large");
  check_one_line_error("estimate-memory --params 288230376151711745", "at most 288230376151711744");
  CliRun ok = run_minispeed("estimate-memory --params 288230376151711744 --zero-stage 0 --dp 1");
  INFO(ok.output);
  CHECK(ok.code == 0);
  CHECK(ok.output.find('-') == std::string::npos);  // no negative byte counts
}

TEST_CASE("a model that cannot fit in memory is refused before allocating", "[cli]") {
  // 1.2e15 parameters: 19 PB of model states, more than any machine has.
  check_one_line_error("train" + kTiny + " --n-layer 100 --n-embd 1000000 --n-head 1",
                       "the model does not fit in memory: 1 rank(s) × 19,200,025,");
}

TEST_CASE("train refuses a --data that is not a regular file", "[cli]") {
  // A FIFO nobody writes used to block the read forever (and /dev/zero, in
  // scripts/test-bad-input.sh, to fill memory).
  std::string fifo = build_dir() + "/cli_fifo";
  std::filesystem::remove(fifo);
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  check_one_line_error("train" + kTiny + " --data " + fifo,
                       "--data: '" + fifo + "' is not a regular file");
  std::filesystem::remove(fifo);
}

// Runs minispeed with at most `kb` KiB per file written (RLIMIT_FSIZE): a
// write past it fails with EFBIG, as a full disk fails with ENOSPC. Open MPI's
// PMIx keeps its own store in memory (gds=hash) instead of in files, which
// the limit would break.
CliRun run_with_file_limit(const std::string& args, int kb) {
  return run_minispeed(args, "env PMIX_MCA_gds=hash bash -c 'trap \"\" XFSZ; ulimit -f " +
                                 std::to_string(kb) + " && exec \"$0\" \"$@\"' ");
}

TEST_CASE("a failed write of the loss curve is an error naming the file", "[cli]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(build_dir()) / "cli_full_disk";
  // A 4-wide model: ~6 KB of weights. 600 steps make a ~15 KB .csv; with an
  // evaluation every step the .svg (a dot per step) outgrows the .csv.
  const std::string micro =
      " --n-layer 1 --n-head 1 --n-embd 4 --seq-len 4 --batch-size 1 --eval-batches 1"
      " --sample-tokens 0 --save-weights " +
      (dir / "run.safetensors").string();
  struct Case {
    std::string flags, file, what;
    int kb;
  };
  for (const Case& c : {Case{" --steps 600 --eval-every 0", "run.loss.csv", "loss curve", 10},
                        Case{" --steps 400 --eval-every 1", "run.loss.svg", "loss chart", 20}}) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    CliRun r = run_with_file_limit("train" + micro + c.flags, c.kb);
    INFO(r.output);
    CHECK(r.code == 1);
    CHECK(r.output.find("error: writing the " + c.what + " to '" + (dir / c.file).string() +
                        "' failed: ") != std::string::npos);
    CHECK(r.output.find("File too large") != std::string::npos);
    CHECK(r.output.find("wrote") == std::string::npos);
    // Written all or nothing: a full disk once left a 0-byte .loss.svg.
    CHECK(!fs::exists(dir / c.file));
  }
  fs::remove_all(dir);
}

#if !defined(__SANITIZE_ADDRESS__)  // ASan reserves more address space than the limit
TEST_CASE("alone an out-of-memory error is one line without MPI_Abort", "[cli]") {
  namespace fs = std::filesystem;
  std::string big = build_dir() + "/cli_sparse_200M.bin";
  {
    std::FILE* f = std::fopen(big.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
  }
  fs::resize_file(big, 200u << 20);  // sparse: costs no disk
  // 1 GB of address space: MPI starts and the data fits, but one batch of
  // 150000 × 1000 tokens (600 MB for x, as much for y) does not.
  CliRun r = run_minispeed("train" + kTiny + " --seq-len 1000 --batch-size 150000 --data " + big,
                           "bash -c 'ulimit -v 1000000 && exec \"$0\" \"$@\"' ");
  fs::remove(big);
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find("error: out of memory (std::bad_alloc) while training step 1 of 2\n") !=
        std::string::npos);
  CHECK(r.output.find("error:") == r.output.rfind("error:"));  // said once
  CHECK(r.output.find("MPI_ABORT") == std::string::npos);
  CHECK(r.output.find("[rank") == std::string::npos);
}
#endif

TEST_CASE("ranks started with different flags stop at once and name the flag", "[cli][mpi]") {
  // mpirun's MPMD form gives each rank its own command line.
  for (auto [flag, want] : {std::pair{" --n-embd 32",
                                      "ranks disagree on --n-embd: 16 on rank 0, "
                                      "32 on rank 1"},
                            std::pair{" --steps 3",
                                      "ranks disagree on --steps: 2 on rank 0, 3 on "
                                      "rank 1"},
                            std::pair{" --lr 2e-3",
                                      "ranks disagree on --lr: 1e-3 on rank 0, 2e-3 "
                                      "on rank 1"}}) {
    std::string bin = build_dir() + "/minispeed";
    CliRun r = run_minispeed("train" + kTiny + " : -np 1 " + bin + " train" + kTiny + flag,
                             mpirun() + " -np 1 ");
    INFO(r.output);
    CHECK(r.code != 0);
    CHECK(r.code != 124);  // timeout's code: a hang
    CHECK(r.output.find(std::string("error: ") + want) != std::string::npos);
  }
  // Spellings of one number agree.
  CliRun same = run_minispeed("train" + kTiny + " --lr 0.001 : -np 1 " + build_dir() +
                                  "/minispeed train" + kTiny + " --lr 1e-3",
                              mpirun() + " -np 1 ");
  INFO(same.output);
  CHECK(same.code == 0);
}

// Regression: the step line's model FLOPs counted the model's parameters after
// ZeRO-3 had released its blocks (nearly none), so stage 3 reported ~1/6 of
// the real figure. The count must not depend on the stage.
TEST_CASE("model FLOPs per step do not depend on the ZeRO stage", "[cli]") {
  auto flops_line = [](const std::string& stage) {
    CliRun r = run_minispeed("train" + kTiny + " --zero-stage " + stage);
    INFO(r.output);
    REQUIRE(r.code == 0);
    size_t at = r.output.find("model FLOPs per step per rank: ");
    REQUIRE(at != std::string::npos);
    return r.output.substr(at, r.output.find('\n', at) - at);
  };
  const std::string zero = flops_line("0");
  CHECK(flops_line("3") == zero);
  CHECK(flops_line("1") == zero);
}

// The phase line (cli/train_step_line.h, PhaseTimes) names every phase the
// loop went through, each with a wall and a CPU figure, and none it skipped.
TEST_CASE("train prints where its time went, phase by phase", "[cli]") {
  CliRun r = run_minispeed("train" + kTiny + " --steps 4 --eval-every 2");
  INFO(r.output);
  REQUIRE(r.code == 0);
  const size_t at = r.output.find("time per phase on rank 0 (wall s / CPU s): start-up ");
  REQUIRE(at != std::string::npos);
  const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
  for (const char* phase : {"; forward (with the batch) ", "; backward (with gradient reduction) ",
                            "; optimizer step ", "; evaluation ", "; end (tables, weights) "}) {
    const size_t p = line.find(phase);
    REQUIRE(p != std::string::npos);
    double wall = -1, cpu = -1;
    CHECK(std::sscanf(line.c_str() + p + std::strlen(phase), "%lf / %lf", &wall, &cpu) == 2);
    CHECK(wall >= 0);
    CHECK(cpu >= 0);
  }
  CHECK(line.find("pipeline schedule") == std::string::npos);  // no pipeline in this run
}
