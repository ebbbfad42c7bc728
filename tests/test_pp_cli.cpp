// `minispeed schedule` as a user runs it, and the timeline SVG's structure.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "parallel/pp/timeline_svg.h"
#include "tensor/error.h"
#include "tests/catch_compat.h"
#include "tests/cli_run.h"

using namespace ms;
using namespace ms::pp;
using test::build_dir;
using test::check_one_line_error;
using test::CliRun;
using test::run_minispeed;

namespace {

// Well-formed XML as far as an SVG writer can get it wrong: every element
// closed in order, attributes quoted, no bare '&' or '<' in text. Returns ""
// or what is wrong.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> open;
  size_t i = 0;
  if (s.rfind("<?xml", 0) == 0) i = s.find("?>") + 2;
  while ((i = s.find_first_of("<&", i)) != std::string::npos) {
    if (s[i] == '&') {
      size_t semi = s.find(';', i);
      std::string ent = s.substr(i, semi == std::string::npos ? 8 : semi - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&apos;" && ent != "&quot;")
        return "bare & at " + std::to_string(i);
      ++i;
      continue;
    }
    size_t end = s.find('>', i);
    if (end == std::string::npos) return "unclosed tag at " + std::to_string(i);
    std::string tag = s.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return "'<' inside tag at " + std::to_string(i);
    if (std::count(tag.begin(), tag.end(), '\'') % 2 || std::count(tag.begin(), tag.end(), '"') % 2)
      return "unbalanced quotes in <" + tag + ">";
    std::string name = tag.substr(tag[0] == '/', tag.find_first_of(" />", 1) - (tag[0] == '/'));
    if (tag[0] == '/') {
      if (open.empty() || open.back() != name) return "</" + name + "> closes nothing open";
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(name);
    }
    i = end + 1;
  }
  return open.empty() ? "" : "<" + open.back() + "> never closed";
}

size_t occurrences(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("timeline SVG: a box per forward and backward, rows, escaped text", "[pp]") {
  Schedule s = make_schedule(ScheduleKind::kInterleaved, 2, 4, 2);
  SimResult r = simulate(s);
  TimelineStyle style;
  style.title = "p < 3 & m > 1";
  style.micro_batches = 4;
  style.virtual_stages = 2;
  std::string svg = timeline_svg(timeline_boxes(r), 2, style);
  CHECK(xml_problem(svg) == "");
  CHECK(occurrences(svg, "<g class='forward'>") == 2 * 4 * 2);
  CHECK(occurrences(svg, "<g class='backward'>") == 2 * 4 * 2);
  CHECK(occurrences(svg, "class='idle'") == 2);
  CHECK(svg.find("p &lt; 3 &amp; m &gt; 1") != std::string::npos);
  CHECK(svg.find(">F0.1<") != std::string::npos);  // labels carry the chunk
  CHECK(xml_problem("<svg><g></svg>") != "");      // the checker can fail
  CHECK_THROWS_WITH(timeline_svg({{3, 0, 1, false, 0}}, 2, style), Catch::Contains("on row 3"));
}

TEST_CASE("minispeed schedule prints the table, the bubble and memory beside the formulas",
          "[pp][cli]") {
  CliRun r = run_minispeed("schedule --pp 4 --micro-batches 8 --pipe-schedule 1f1b");
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("stage 3: rA0 L0 F0 rA1 B0 sG0") != std::string::npos);
  CHECK(r.output.find("bubble (time − ideal)/ideal = 3/8") != std::string::npos);
  CHECK(r.output.find("matches the formula (Narayanan et al. 2021) (p − 1)/m = 3/8") !=
        std::string::npos);
  CHECK(r.output.find("stage 0: 4, matches min(p − r, m) = min(4 − 0, 8) = 4") !=
        std::string::npos);
  CHECK(r.output.find("stage 3: 1, matches") != std::string::npos);

  r = run_minispeed("schedule --pp 4 --micro-batches 8 --pipe-schedule gpipe");
  CHECK(r.output.find("stage 3: 8, matches m = 8") != std::string::npos);
  r = run_minispeed("schedule --pp 4 --micro-batches 8 --pipe-schedule interleaved");
  CHECK(r.output.find("v = 2 model chunks per stage") != std::string::npos);
  CHECK(r.output.find("(p − 1)/(v·m) = 3/16") != std::string::npos);
  CHECK(r.output.find("activation messages per step: 56 = (p·v − 1)·m") != std::string::npos);
  CHECK(r.output.find("DIFFERS") == std::string::npos);
  // Megatron's warm-up 10 on stage 0: 11 chunks, 11/8 of 1F1B's (Korthikanti et al. 2022).
  CHECK(r.output.find("stage 0: 11, matches min(w + 1, m·v) = min(11, 16) = 11") !=
        std::string::npos);
  CHECK(r.output.find("stage 0 activations vs 1F1B's (min(p, m) micro-batches of the same "
                      "layers): 11/8 = 1.3750 (1 + (p − 1)/(p·v) = 11/8") !=
        std::string::npos);
  CHECK(r.output.find("with blocking (rendezvous) sends: time") != std::string::npos);

  r = run_minispeed("schedule --help");
  CHECK(r.code == 0);
  for (const char* flag :
       {"--pp", "--micro-batches", "--pipe-schedule", "--virtual-stages", "--svg"})
    CHECK(r.output.find(flag) != std::string::npos);
}

TEST_CASE("minispeed schedule --svg writes a well-formed timeline", "[pp][cli]") {
  std::string path = build_dir() + "/pp_timeline_test.svg";
  std::filesystem::remove(path);
  CliRun r = run_minispeed("schedule --pp 4 --micro-batches 9 --pipe-schedule 1f1b --svg " + path);
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::string svg = read_file(path);
  CHECK(xml_problem(svg) == "");
  CHECK(occurrences(svg, "<g class='forward'>") == 4 * 9);
  CHECK(occurrences(svg, "<g class='backward'>") == 4 * 9);
  CHECK(svg.find("stage 3</text>") != std::string::npos);
  // Python's XML parser, where the machine has one, must agree.
  if (std::system("command -v python3 >/dev/null 2>&1") == 0)
    CHECK(std::system(("python3 -c \"import xml.etree.ElementTree as E; E.parse('" + path + "')\"")
                          .c_str()) == 0);
}

TEST_CASE("minispeed schedule --svg creates a missing directory and names the path it cannot write",
          "[pp][cli]") {
  const std::string dir = build_dir() + "/pp_svg_new_dir";
  std::filesystem::remove_all(dir);
  CliRun r = run_minispeed("schedule --pp 2 --micro-batches 2 --svg " + dir + "/sub/t.svg");
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(std::filesystem::is_regular_file(dir + "/sub/t.svg"));
  // A file where a directory should be: one line naming --svg and the path, words apart.
  const std::string blocked = dir + "/sub/t.svg/x.svg";
  r = run_minispeed("schedule --pp 2 --micro-batches 2 --svg " + blocked);
  CHECK(r.code != 0);
  CHECK(r.output.find("--svgcannot") == std::string::npos);
  CHECK(r.output.find(blocked) != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("minispeed schedule: bad values are one-line errors", "[pp][cli]") {
  check_one_line_error("schedule --pp 0", "--pp must be in [1, 64], got 0");
  check_one_line_error("schedule --micro-batches 0", "--micro-batches must be in [1, 512], got 0");
  check_one_line_error("schedule --pipe-schedule foo",
                       "unknown schedule 'foo' (valid: gpipe, 1f1b, interleaved)");
  check_one_line_error("schedule --pp 4 --micro-batches 6 --pipe-schedule interleaved",
                       "(m = 6) to be a multiple of --pp (p = 4)");
  check_one_line_error("schedule --pipe-schedule 1f1b --virtual-stages 2",
                       "--virtual-stages needs --pipe-schedule interleaved (1f1b holds one");
  check_one_line_error("schedule --pp many", "--pp must be an integer, got 'many'");
  check_one_line_error("schedule --svg /", "cannot save to '/'");
  check_one_line_error("schedule --pp 64 --micro-batches 512 --svg x.svg",
                       "--svg: the timeline would have 65536 boxes (2·p·m·v); at most 20000");
}
