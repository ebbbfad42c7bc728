#include "parallel/engine/pipeline.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "autograd/grad_mode.h"
#include "parallel/pp/simulator.h"
#include "parallel/pp/timeline_svg.h"
#include "parallel/pp/traffic.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

namespace {

std::vector<std::string> parameter_names(GPT& gpt) {
  std::vector<std::string> names;
  for (const auto& [name, t] : gpt.named_parameters()) names.push_back(name);
  return names;
}

std::string str_fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

}  // namespace

TrainPipeline::TrainPipeline(const PipelineSettings& c, GPT& gpt, pp::StageModel parts, Mesh& mesh,
                             std::vector<int64_t> activation)
    : gpt_(gpt), mesh_(mesh), c_(c), activation_(activation) {
  const int p = mesh.pp_size(), v = static_cast<int>(c.virtual_stages);
  const int64_t L = gpt.config().n_layer;
  const std::vector<std::string> names = parameter_names(gpt);
  owner_.assign(names.size(), -1);
  for (int r = p - 1; r >= 0; --r) {  // ends at the lowest owner (wte: the first stage)
    const pp::StageParams sp = pp::stage_params(names, L, p, v, r);
    for (size_t i = 0; i < names.size(); ++i)
      if (sp.owned[i]) owner_[i] = r;
  }
  mine_ = pp::stage_params(names, L, p, v, mesh.pp_rank());
  const pp::ScheduleKind kind = pp::parse_schedule_kind(c.schedule);
  pp::Schedule schedule = pp::make_schedule(kind, p, static_cast<int>(c.micro_batches), v);
  engine_ = std::make_unique<pp::PipelineEngine>(std::move(parts), mesh.pp(), std::move(schedule),
                                                 L, std::move(activation), gpt.wte->weight);
}

ZeroPipeline TrainPipeline::zero_options() const {
  return ZeroPipeline{mesh_.pp(), mine_.owned, mine_.tied_copy};
}

double TrainPipeline::step(const std::function<Batch(int)>& load, ZeroOptimizer& engine, double lr,
                           double max_norm, double* norm) {
  // No dp communication inside backward: the tied gradients must be summed
  // first (ReduceTiedGrads, then ReduceGrads).
  engine.set_gradient_sync(false);
  pp::StepHooks hooks{[&] { engine.reduce_gradients(); },
                      [&] { *norm = engine.step(lr, max_norm); }};
  return engine_->train_step(load, hooks);
}

void TrainPipeline::gather_stages() {
  NoGradGuard no_grad;
  std::vector<Tensor> ps = gpt_.parameters();
  for (size_t i = 0; i < ps.size(); ++i) mesh_.pp().broadcast(ps[i], owner_[i]);
}

double TrainPipeline::evaluate(const TokenData& data, int64_t batches) {
  gpt_.eval();
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i)
    sum += engine_->forward_loss(data.val_batch(i * mesh_.dp_size() + mesh_.dp_rank(), c_.B, c_.T));
  gpt_.train();
  Tensor total = full({1}, sum / static_cast<double>(batches), DType::F64);
  mesh_.dp().all_reduce(total, ReduceOp::Avg);
  return total.item();
}

StepFormula TrainPipeline::traffic_formula() const {
  return pp_step_formula({.B = activation_[0],
                          .T = activation_[1],
                          .C = activation_[2],
                          .micro_batches = c_.micro_batches,
                          .pp = mesh_.pp_size(),
                          .virtual_stages = static_cast<int>(c_.virtual_stages),
                          .tied_numel = gpt_.wte->weight.numel()});
}

StepFormula TrainPipeline::tp_traffic_formula(int tp) const {
  const int p = mesh_.pp_size(), v = static_cast<int>(c_.virtual_stages), r = mesh_.pp_rank();
  int64_t blocks = 0;
  for (int chunk = 0; chunk < v; ++chunk) {
    const pp::LayerRange l = pp::stage_layers(gpt_.config().n_layer, p * v, chunk * p + r);
    blocks += l.end - l.begin;
  }
  return tp_in_stage_step_formula({.B = activation_[0],
                                   .T = activation_[1],
                                   .C = activation_[2],
                                   .blocks = blocks,
                                   .micro_steps = c_.micro_batches,
                                   .tp = tp,
                                   .first = r == 0,
                                   .last = r == p - 1,
                                   .recompute_blocks = c_.checkpoint_activations});
}

std::string TrainPipeline::measured_report(const std::string& svg) {
  // Per compute instruction: start, end, backward, micro-batch, chunk; then
  // this rank's peak of stashed activations. Every rank ran 2·m·v computes.
  const int p = mesh_.pp_size(), v = static_cast<int>(c_.virtual_stages);
  const int64_t m = c_.micro_batches, per = 2 * m * v, width = per * 5 + 2;
  std::vector<double> mine;
  for (const pp::Event& e : engine_->events())
    if (e.instr.op == pp::Op::kForwardPass || e.instr.op == pp::Op::kBackwardPass)
      for (double x : {e.start, e.end, e.instr.op == pp::Op::kBackwardPass ? 1.0 : 0.0,
                       double(e.instr.micro_batch), double(e.instr.chunk)})
        mine.push_back(x);
  MS_ASSERT(static_cast<int64_t>(mine.size()) == per * 5, "pipeline: ", mine.size() / 5,
            " computes recorded, expected ", per);
  mine.push_back(engine_->peak_stashed());
  mine.push_back(static_cast<double>(engine_->peak_stash_bytes()));
  Tensor in = from_vector(mine, {width}, DType::F64);
  Tensor all = Tensor::empty({width * p}, DType::F64);
  mesh_.pp().all_gather(in, all);
  if (mesh_.pp_rank() != 0) return "";
  const double* d = all.host_data<double>();
  std::vector<pp::TimelineBox> boxes;
  double makespan = 0;
  std::vector<double> busy(p, 0);
  for (int r = 0; r < p; ++r)
    for (int64_t k = 0; k < per; ++k) {
      const double* e = d + r * width + k * 5;
      boxes.push_back({r, e[0] * 1e3, e[1] * 1e3, e[2] != 0, int(e[3]), int(e[4])});
      busy[r] += e[1] - e[0];
      makespan = std::max(makespan, e[1]);
    }
  const pp::ScheduleKind kind = pp::parse_schedule_kind(c_.schedule);
  const pp::SimResult sim = pp::simulate(engine_->schedule());
  const pp::Rational formula = pp::bubble_formula(kind, p, static_cast<int>(m), v);
  // The bubble as the simulator defines it, (makespan − busy) / busy, per
  // stage: time measured from each rank's own start of the step.
  double bubble = 0;
  for (int r = 0; r < p; ++r) bubble += (makespan - busy[r]) / busy[r] / p;
  std::string out =
      str_cat("pipeline (last step, measured): bubble ", str_fixed(bubble, 3),
              " (mean over stages of idle / busy; formula ",
              kind == pp::ScheduleKind::kInterleaved ? "(p − 1)/(v·m)" : "(p − 1)/m", " = ",
              formula.str(), " = ", str_fixed(formula.value(), 3), ", simulated ", sim.bubble.str(),
              ", with forward 1 and backward 2 and equal stages)\n");
  for (int r = 0; r < p; ++r)
    out += str_cat("  stage ", r, ": busy ", str_fixed(busy[r] * 1e3, 1), " ms of ",
                   str_fixed(makespan * 1e3, 1),
                   " ms; activations held at the peak: ", int(d[r * width + per * 5]),
                   v > 1 ? " chunk(s)" : " micro-batch(es)", " measured (",
                   str_fixed(d[r * width + per * 5 + 1] / 1024.0, 0),
                   " KiB above the step's start), ", sim.peak_in_flight[r], " simulated (",
                   pp::peak_formula_text(kind, p, static_cast<int>(m), v, r), ")\n");
  if (!svg.empty() && mesh_.rank() == 0) {  // one writer: every pp group has a rank 0
    pp::TimelineStyle style;
    style.title = str_cat("minispeed train --pp ", p, " --pipe-schedule ", c_.schedule, ", ", m,
                          " micro-batches: the last step as measured");
    style.subtitle = str_cat("bubble measured ", str_fixed(bubble, 3), ", formula ", formula.str());
    style.time_unit = "ms";
    style.micro_batches = static_cast<int>(m);
    style.virtual_stages = v;
    std::ofstream f(svg);
    MS_CHECK(f.good(), "--timeline: cannot write '", svg, "'");
    f << pp::timeline_svg(boxes, p, style);
    MS_CHECK(f.good(), "--timeline: writing '", svg, "' failed");
    out += str_cat("wrote ", svg, "\n");
  }
  return out;
}

}  // namespace ms
