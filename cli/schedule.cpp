// `minispeed schedule`: a pipeline schedule as data. Prints each stage's
// instruction list (DeepSpeed's schedule.py vocabulary), runs it in the
// simulator (parallel/pp/simulator.h) and prints the bubble and the
// activations in flight beside the formulas of Narayanan et al. 2021; with
// --svg, draws the timeline. One process, no training, no MPI ranks.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/output_paths.h"
#include "nn/atomic_save.h"
#include "parallel/comm/runtime.h"
#include "parallel/pp/simulator.h"
#include "parallel/pp/timeline_svg.h"

namespace ms {

namespace {

using namespace pp;

// Bounds that keep the table readable and the simulation instant.
constexpr int64_t kMaxStages = 64, kMaxMicroBatches = 512, kMaxVirtual = 16;
constexpr int64_t kMaxSvgBoxes = 20000;

int bounded(const Flags& f, const std::string& name, int64_t lo, int64_t hi) {
  int64_t v = f.integer(name);
  MS_CHECK(v >= lo && v <= hi, "--", name, " must be in [", lo, ", ", hi, "], got ", v);
  return static_cast<int>(v);
}

void print_table(const Schedule& s) {
  const int v = s.virtual_stages;
  std::printf(
      "instructions per stage (L LoadMicroBatch, F/B ForwardPass/BackwardPass, sA/rA Send/"
      "RecvActivation,\n  sG/rG Send/RecvGrad, RT ReduceTiedGrads, RG ReduceGrads, OS "
      "OptimizerStep;\n  the number is the micro-batch%s):\n",
      v > 1 ? ", .c the model chunk" : "");
  for (int r = 0; r < s.stages; ++r) {
    std::string line = "  stage " + std::to_string(r) + ":";
    const size_t indent = line.size();
    for (const Instr& in : s.steps[r]) {
      std::string word = short_name(in, v);
      if (line.size() + 1 + word.size() > 100) {
        std::printf("%s\n", line.c_str());
        line.assign(indent, ' ');
      }
      line += ' ';
      line += word;
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string check_mark(bool same) {
  return same ? "matches" : "DIFFERS from";
}

}  // namespace

int schedule_command(int argc, char** argv, Communicator& world) {
  Flags f("minispeed schedule",
          "A pipeline schedule as data: each stage's instructions, simulated with unit costs\n"
          "(forward 1, backward 2, send/recv 0, blocking sends), the bubble and the activations\n"
          "in flight beside their formulas, and the timeline as SVG. Runs in one process.");
  f.add("pp", "4", "pipeline stages p");
  f.add("micro-batches", "8", "micro-batches per step m");
  f.add("pipe-schedule", "1f1b", "gpipe | 1f1b | interleaved");
  f.add("virtual-stages", "",
        "model chunks per stage v, interleaved only (2 when not given); m must be a multiple of p");
  f.add("svg", "", "write the simulated timeline to this SVG file");
  if (!f.parse(argc, argv, 2)) return 0;
  agreed([&] {
    MS_CHECK(world.size() == 1,
             "minispeed schedule runs in one process (no mpirun needed); it was "
             "started on ",
             world.size(), " ranks");
  });
  int p = bounded(f, "pp", 1, kMaxStages);
  int m = bounded(f, "micro-batches", 1, kMaxMicroBatches);
  ScheduleKind kind = parse_schedule_kind(f.str("pipe-schedule"));
  int v = 1;
  if (f.given("virtual-stages")) {
    MS_CHECK(kind == ScheduleKind::kInterleaved, "--virtual-stages needs --pipe-schedule ",
             "interleaved (", schedule_name(kind), " holds one model chunk per stage)");
    v = bounded(f, "virtual-stages", 1, kMaxVirtual);
  } else if (kind == ScheduleKind::kInterleaved) {
    v = 2;
  }
  const std::string svg_path = f.str("svg");
  if (!svg_path.empty()) {
    // About 250 bytes per box: keep the file a picture, not a data dump.
    const int64_t boxes = int64_t{2} * p * m * v;
    MS_CHECK(boxes <= kMaxSvgBoxes, "--svg: the timeline would have ", boxes,
             " boxes (2·p·m·v); at most ", kMaxSvgBoxes,
             " can be drawn: use fewer --pp, --micro-batches or --virtual-stages");
    check_output_path("--svg", svg_path);
  }

  Schedule s = make_schedule(kind, p, m, v);
  SimResult r = simulate(s);
  std::printf("pipeline schedule %s: p = %d stages, m = %d micro-batches", schedule_name(kind), p,
              m);
  if (kind == ScheduleKind::kInterleaved) std::printf(", v = %d model chunks per stage", v);
  std::printf("\n\n");
  print_table(s);

  const Rational want = bubble_formula(kind, p, m, v);
  std::printf(
      "\nsimulated (unit costs per %s: forward 1, backward 2; no deadlock with blocking "
      "send/recv;\n  times with sends posted and not waited on, as Megatron's isend/irecv):\n"
      "  time %lld, ideal %lld = m·%s(1 + 2), bubble (time − ideal)/ideal = %s = %.4f\n"
      "  %s the formula (Narayanan et al. 2021) %s = %s\n"
      "  with blocking (rendezvous) sends: time %lld, bubble %s\n",
      v > 1 ? "chunk" : "stage", static_cast<long long>(r.makespan),
      static_cast<long long>(r.ideal), v > 1 ? "v·" : "", r.bubble.str().c_str(), r.bubble.value(),
      check_mark(r.bubble == want).c_str(),
      kind == ScheduleKind::kInterleaved ? "(p − 1)/(v·m)" : "(p − 1)/m", want.str().c_str(),
      static_cast<long long>(r.rendezvous_makespan), r.rendezvous_bubble.str().c_str());

  std::printf("activations in flight at the peak (%s):\n",
              v > 1 ? "model chunks, each 1/v of the stage's layers" : "micro-batches");
  for (int st = 0; st < p; ++st)
    std::printf("  stage %d: %d, %s %s\n", st, r.peak_in_flight[st],
                check_mark(r.peak_in_flight[st] == peak_formula(kind, p, m, v, st)).c_str(),
                peak_formula_text(kind, p, m, v, st).c_str());
  if (kind != ScheduleKind::kGPipe) {
    // Korthikanti et al. 2022, §4.2.3: interleaving's warm-up costs stage 0
    // 1 + (p − 1)/(p·v) times 1F1B's activations (m large enough).
    const Rational f = activation_factor_vs_1f1b(r, p, m, v, 0);
    const std::string ratio = str_cat(r.peak_in_flight[0], "/", v * std::min(p, m));
    std::printf(
        "stage 0 activations vs 1F1B's (min(p, m) micro-batches of the same layers): %s%s = "
        "%.4f%s\n",
        ratio.c_str(), ratio == f.str() ? "" : str_cat(" = ", f.str()).c_str(), f.value(),
        kind == ScheduleKind::kInterleaved && v > 1
            ? str_cat(" (1 + (p − 1)/(p·v) = ", Rational::of(p * v + p - 1, p * v).str(),
                      ", Korthikanti et al. 2022)")
                  .c_str()
            : "");
  }

  int sends = 0;
  for (const auto& list : s.steps)
    for (const Instr& in : list) sends += in.op == Op::kSendActivation;
  if (p == 1)
    std::printf("activation messages per step: %d (one stage: chunks hand over in place)\n", sends);
  else
    std::printf(
        "activation messages per step: %d = (p·v − 1)·m = (%d·%d − 1)·%d, as many "
        "gradient messages back\n",
        sends, p, v, m);

  if (!svg_path.empty()) {
    TimelineStyle style;
    style.title =
        str_cat("minispeed schedule --pp ", p, " --micro-batches ", m, " --pipe-schedule ",
                schedule_name(kind),
                kind == ScheduleKind::kInterleaved ? str_cat(" --virtual-stages ", v) : "");
    style.subtitle =
        str_cat("simulated bubble ", r.bubble.str(), ", formula ",
                kind == ScheduleKind::kInterleaved ? "(p − 1)/(v·m)" : "(p − 1)/m", " = ",
                want.str(), "; forward 1, backward 2 per ", v > 1 ? "chunk" : "stage");
    style.time_unit = "forward of one chunk = 1";
    if (v == 1) style.time_unit = "forward = 1";
    style.micro_batches = m;
    style.virtual_stages = v;
    std::string svg = timeline_svg(timeline_boxes(r), p, style);
    // check_save_path accepted a missing directory that can be created: create it.
    if (const auto dir = std::filesystem::path(svg_path).parent_path(); !dir.empty())
      std::filesystem::create_directories(dir);
    AtomicFile out(svg_path, str_cat("--svg '", svg_path, "': "));
    out.write(svg.data(), svg.size());
    out.commit();
    std::printf("timeline written to %s\n", svg_path.c_str());
  }
  return 0;
}

}  // namespace ms
