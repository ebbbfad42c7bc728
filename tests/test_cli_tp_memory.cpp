// `minispeed train` prints, under its memory table, the parameters per tp rank
// and one layer's activations, each measured beside its formula
// (parallel/tp/memory_report.h): every mode must print "match", at the
// numbers the formulas give for the run's shape.
#include <cstdlib>

#include "catch_compat.h"
#include "nn/gpt.h"
#include "parallel/tp/activation_memory.h"
#include "parallel/tp/memory_report.h"
#include "parallel/zero/memory.h"
#include "tests/cli_run.h"

using namespace ms;
using test::CliRun;
using test::run_minispeed;

namespace {

// B 2, T 8, C 16, 2 heads, 2 layers.
const std::string kRun =
    "train --n-layer 2 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --steps 1 "
    "--eval-every 0 --sample-tokens 0";

std::string mpirun(int np) {
  const char* m = std::getenv("MPIRUN");
  return std::string(m ? m : "mpirun --oversubscribe") + " -np " + std::to_string(np) + " ";
}

}  // namespace

TEST_CASE("train's memory lines: parameters per tp rank and a layer's activations, measured",
          "[cli][tp][activations]") {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 16, cfg.block_size = 8;
  struct Mode {
    int np, tp;
    bool sp;
    double dropout, attn_dropout = 0;
  };
  // The last two: --attn-dropout reaches the model (its 1-byte mask is in the count).
  for (Mode m : {Mode{1, 1, false, 0}, Mode{2, 2, false, 0}, Mode{2, 2, true, 0},
                 Mode{2, 2, true, 0.1}, Mode{1, 1, false, 0.1, 0.1}, Mode{2, 2, true, 0.1, 0.1}}) {
    std::string args = kRun + " --dropout " + std::to_string(m.dropout) + " --attn-dropout " +
                       std::to_string(m.attn_dropout);
    if (m.tp > 1) args += " --tp " + std::to_string(m.tp);
    if (m.sp) args += " --sequence-parallel";
    CliRun r = run_minispeed(args, m.np > 1 ? mpirun(m.np) : "");
    INFO("minispeed " << args << "\n" << r.output);
    REQUIRE(r.code == 0);
    const TpParamSplit p = tp_param_split(cfg, m.tp);
    CHECK(r.output.find("measured (the tensors each rank holds, before ZeRO partitions them): "
                        "split " +
                        format_bytes(double(p.split)) + " + replicated " +
                        format_bytes(double(p.replicated))) != std::string::npos);
    const BlockActivations a = block_activations({2, 8, 16, 2, m.tp, m.sp, m.sp, m.dropout, m.attn_dropout});
    const double bytes = double(a.saved_bytes() + a.extra_bytes());
    CHECK(r.output.find("one sequence, × B = 2): " + format_bytes(bytes) +
                        " bytes on every rank: match") != std::string::npos);
    CHECK(r.output.find("MISMATCH") == std::string::npos);
  }
}
