// The samples `minispeed train` prints: every sampled byte reaches the
// terminal, including the NUL bytes an untrained byte-level model samples.
#include <string>

#include "catch_compat.h"
#include "nn/generate.h"
#include "tests/cli_run.h"

using namespace ms;
using test::CliRun;
using test::run_minispeed;

namespace {

// The bytes a printable_sample stands for: \xNN and \\ are one byte each.
int64_t sampled_bytes(const std::string& shown) {
  int64_t n = 0;
  for (size_t i = 0; i < shown.size(); ++n) i += shown[i] != '\\' ? 1 : shown[i + 1] == 'x' ? 4 : 2;
  return n;
}

// What train printed between "--- sample at step <step> ---\n" and "\n---\n".
std::string sample_at(const std::string& output, int step) {
  const std::string head = "--- sample at step " + std::to_string(step) + " ---\n";
  const size_t from = output.find(head);
  if (from == std::string::npos) return "<no sample at step " + std::to_string(step) + ">";
  const size_t begin = from + head.size();
  const size_t end = output.find("\n---\n", begin);
  return end == std::string::npos ? "<unterminated>" : output.substr(begin, end - begin);
}

}  // namespace

TEST_CASE("printable_sample shows NUL and control bytes and keeps text", "[cli]") {
  CHECK(printable_sample(std::string("\0ab", 3)) == "\\x00ab");
  CHECK(printable_sample("line\n\ttab\r\x7f\\") == "line\n\ttab\\x0d\\x7f\\\\");
  CHECK(printable_sample("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes through
  CHECK(sampled_bytes(printable_sample(std::string("\0a\\\x01\n", 5))) == 5);
}

// With this seed the model after 2 steps samples a NUL as byte 36 of the 120:
// printed through "%s", the sample stopped there (an empty sample when the
// NUL came first).
TEST_CASE("train's mid-training sample prints every one of its 120 bytes", "[cli]") {
  CliRun r = run_minispeed(
      "train --n-layer 4 --n-head 4 --n-embd 128 --seq-len 16 --batch-size 16 --steps 3 "
      "--seed 5 --sample-every 2 --eval-every 0 --sample-tokens 0");
  INFO(r.output);
  REQUIRE(r.code == 0);
  const std::string shown = sample_at(r.output, 2);
  CHECK(shown.find('\0') == std::string::npos);
  CHECK(sampled_bytes(shown) == 120);
  CHECK(shown.find("\\x00") != std::string::npos);  // the byte that cut it short before
}
