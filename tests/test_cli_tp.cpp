// `minispeed train`'s tensor-parallel flags as a user types them: --tp and the
// --sequence-parallel switch (given bare, or =0/=1/=false/=true; a bare switch
// must not swallow the next argument), and their one-line errors.
#include "catch_compat.h"
#include "tests/cli_run.h"

using namespace ms;
using test::check_one_line_error;
using test::CliRun;
using test::run_minispeed;

namespace {
const std::string kTiny =
    "train --n-layer 1 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --steps 1 "
    "--eval-every 0 --sample-tokens 0";
}  // namespace

TEST_CASE("--sequence-parallel is a switch; without --tp > 1 it is an error", "[cli][tp]") {
  // Bare, followed by another flag: the switch takes no value, so --tp 1 is
  // still read as --tp.
  check_one_line_error(kTiny + " --sequence-parallel --tp 1", "--sequence-parallel needs --tp > 1");
  check_one_line_error(kTiny + " --sequence-parallel=true", "--sequence-parallel needs --tp > 1");
  check_one_line_error(kTiny + " --sequence-parallel=2",
                       "switch --sequence-parallel takes no value (or =0, =1, =false, =true)");
  CliRun off = run_minispeed(kTiny + " --sequence-parallel=0");
  INFO(off.output);
  CHECK(off.code == 0);
  CliRun help = run_minispeed("train --help");
  CHECK(help.output.find("--sequence-parallel") != std::string::npos);
  CHECK(help.output.find("--tp ") != std::string::npos);
}

TEST_CASE("--tp errors name the flag and what it must divide", "[cli][tp]") {
  check_one_line_error(kTiny + " --tp 0", "--tp must be positive, got 0");
  check_one_line_error(kTiny + " --tp 2", "--tp 2 does not divide the 1 ranks");
}
