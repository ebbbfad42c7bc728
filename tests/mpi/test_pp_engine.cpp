// The pipeline runtime (parallel/pp/pipeline_engine.h) on pp = 2 stages ×
// dp = world / 2 replicas, against one process with the same global batch:
// losses, gradient norms (the tied wte counted once) and every parameter
// after 3 SGD steps; the activations held at the peak against the simulator;
// and the order of the tied-gradient sum and the dp reduction (Megatron#844),
// shown by running the schedule with the two swapped. Every rank runs every
// collective before any CHECK.
#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/mesh.h"
#include "parallel/pp/pipeline_engine.h"
#include "parallel/pp/simulator.h"
#include "parallel/zero/zero_optimizer.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

constexpr int64_t B = 2, T = 15, kSteps = 3;

GPTConfig tiny(int64_t C = 30, int64_t n_layer = 3) {
  GPTConfig c;
  // 3 blocks on 2 stages: the remainder goes to stage 0 (2 blocks, 1 block).
  c.n_layer = n_layer, c.n_head = 2, c.n_embd = C, c.block_size = T;
  return c;
}

struct Run {
  std::vector<double> losses, norms;
  std::vector<Tensor> params;
  int peak = 0;
  size_t peak_bytes = 0;
};

std::unique_ptr<Optimizer> sgd(std::vector<Tensor> ps) {
  return std::make_unique<SGD>(std::move(ps), 0.1, 0.9, 0.01);
}

// One process, batch D·B, m micro-steps each scaled by 1/m.
Run reference(int D, int m, int64_t C = 30, int64_t n_layer = 3) {
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  GPT model(tiny(C, n_layer), 3);
  auto opt = sgd(model.parameters());
  Run run;
  for (int64_t step = 0; step < kSteps; ++step) {
    double loss_sum = 0;
    for (int k = 0; k < m; ++k) {
      Batch b = data.train_batch(step * m + k, 0, 1, D * B, T);
      Tensor loss = model.loss(b.x, b.y);
      loss_sum += loss.item();
      mul(loss, 1.0 / m).backward();
    }
    run.losses.push_back(loss_sum / m);
    run.norms.push_back(clip_grad_norm(model.parameters(), 0));
    opt->step();
    opt->zero_grad();
  }
  for (const Tensor& p : model.parameters()) run.params.push_back(clone(p));
  return run;
}

// pp 2 × dp (world / 2), v model chunks per stage. swap_tied_and_dp: the
// schedule's ReduceTiedGrads moved after ReduceGrads, the order Megatron#844
// reports.
Run pipelined(Communicator& world, int zero_stage, pp::ScheduleKind kind, int m,
              bool swap_tied_and_dp = false, int64_t C = 30, int v = 1, int64_t n_layer = 3) {
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  Mesh mesh(world, world.size() / 2, 1, 2);
  GPT model(tiny(C, n_layer), 3);
  const int64_t L = model.config().n_layer;
  pp::StageModel parts{[&](const Tensor& x) { return model.embed(x); },
                       [&](int64_t l, const Tensor& x) { return model.blocks()[l]->forward(x); },
                       [&](const Tensor& x, const Tensor& y) { return model.head_loss(x, y); }};
  pp::Schedule s = pp::make_schedule(kind, 2, m, v);
  if (swap_tied_and_dp)
    for (auto& list : s.steps) {
      auto rt = std::find_if(list.begin(), list.end(),
                             [](const pp::Instr& i) { return i.op == pp::Op::kReduceTiedGrads; });
      auto rg = std::find_if(list.begin(), list.end(),
                             [](const pp::Instr& i) { return i.op == pp::Op::kReduceGrads; });
      std::iter_swap(rt, rg);
    }
  std::vector<std::string> names;
  for (const auto& [n, t] : model.named_parameters()) names.push_back(n);
  const pp::StageParams mine = pp::stage_params(names, L, 2, v, mesh.pp_rank());
  pp::PipelineEngine engine(parts, mesh.pp(), s, L, {B, T, model.config().n_embd},
                            model.wte->weight);
  ZeroOptions o;
  o.stage = zero_stage;
  o.pp = ZeroPipeline{mesh.pp(), mine.owned, mine.tied_copy};
  ZeroOptimizer zero(model, mesh.dp(), o, sgd);
  Run run;
  for (int64_t step = 0; step < kSteps; ++step) {
    double norm = 0;
    auto load = [&](int mb) {
      return data.train_batch(step * m + mb, mesh.dp_rank(), mesh.dp_size(), B, T);
    };
    zero.set_gradient_sync(false);
    pp::StepHooks hooks{[&] { zero.reduce_gradients(); }, [&] { norm = zero.step(0.1, 0); }};
    double loss = engine.broadcast_loss(engine.train_step(load, hooks));
    Tensor l = full({1}, loss, DType::F64);
    mesh.dp().all_reduce(l, ReduceOp::Avg);
    run.losses.push_back(l.item());
    run.norms.push_back(norm);
    run.peak = std::max(run.peak, engine.peak_stashed());
    run.peak_bytes = std::max(run.peak_bytes, engine.peak_stash_bytes());
  }
  // Every parameter from the stage that trains it (wte: the first).
  NoGradGuard no_grad;
  std::vector<Tensor> ps = model.parameters();
  const pp::StageParams first = pp::stage_params(names, L, 2, v, 0);
  for (size_t i = 0; i < ps.size(); ++i) mesh.pp().broadcast(ps[i], first.owned[i] ? 0 : 1);
  for (const Tensor& p : ps) run.params.push_back(clone(p));
  return run;
}

// The largest |a − b| over every parameter, relative to the tensor's scale.
double max_param_diff(const Run& a, const Run& b) {
  double worst = 0;
  for (size_t i = 0; i < a.params.size(); ++i) {
    std::vector<double> x = a.params[i].to_vector(), y = b.params[i].to_vector();
    double scale = 1e-3;
    for (double v : y) scale = std::max(scale, std::fabs(v));
    for (size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::fabs(x[k] - y[k]) / scale);
  }
  return worst;
}

}  // namespace

TEST_CASE("pipeline: pp 2 × dp trains like one process (GPipe and 1F1B, ZeRO 0 and 1)",
          "[mpi][pp][pp_engine]") {
  auto world = Communicator::world();
  if (world.size() % 2 != 0) return;
  const int D = world.size() / 2;
  for (pp::ScheduleKind kind : {pp::ScheduleKind::kGPipe, pp::ScheduleKind::kOneFOneB})
    for (int m : {1, 2, 5})
      for (int stage : {0, 1}) {
        Run ref = reference(D, m);
        Run got = pipelined(world, stage, kind, m);
        INFO(pp::schedule_name(kind) << " m " << m << " ZeRO " << stage << " dp " << D);
        for (int64_t s = 0; s < kSteps; ++s) {
          CHECK(std::fabs(got.losses[s] - ref.losses[s]) < 1e-5);
          // The tied wte counted twice would add its squared norm again.
          CHECK(std::fabs(got.norms[s] - ref.norms[s]) < 1e-5 * std::max(1.0, ref.norms[s]));
        }
        CHECK(max_param_diff(got, ref) < 1e-5);
        // Activations held at the peak, measured, equal the simulator's count:
        // GPipe m, 1F1B min(p − r, m).
        const int r = Mesh(world, D, 1, 2).pp_rank();
        CHECK(got.peak == pp::simulate(pp::make_schedule(kind, 2, m)).peak_in_flight[r]);
        CHECK(got.peak == (kind == pp::ScheduleKind::kGPipe ? m : std::min(2 - r, m)));
      }
}

TEST_CASE("pipeline: interleaved (Megatron's order, v = 2) trains like one process",
          "[mpi][pp][pp_engine]") {
  auto world = Communicator::world();
  if (world.size() % 2 != 0) return;
  const int D = world.size() / 2, p = 2, v = 2;
  for (int m : {2, 4}) {
    Run ref = reference(D, m, 30, 4);
    Run got = pipelined(world, 1, pp::ScheduleKind::kInterleaved, m, false, 30, v, 4);
    INFO("interleaved m " << m << " dp " << D);
    for (int64_t s = 0; s < kSteps; ++s) {
      CHECK(std::fabs(got.losses[s] - ref.losses[s]) < 1e-5);
      CHECK(std::fabs(got.norms[s] - ref.norms[s]) < 1e-5 * std::max(1.0, ref.norms[s]));
    }
    CHECK(max_param_diff(got, ref) < 1e-5);
    // Chunks held at the peak, measured, equal the simulator's: Megatron's
    // warm-up (p − r − 1)·2 + (v − 1)·p plus one, capped at m·v.
    const int r = Mesh(world, D, 1, 2).pp_rank();
    CHECK(got.peak ==
          pp::simulate(pp::make_schedule(pp::ScheduleKind::kInterleaved, p, m, v)).peak_in_flight[r]);
    CHECK(got.peak == std::min(2 * (p - r - 1) + (v - 1) * p + 1, m * v));
  }
}

TEST_CASE("pipeline: the bytes held at the peak follow the count of stashed micro-batches",
          "[mpi][pp][pp_engine]") {
  auto world = Communicator::world();
  if (world.size() % 2 != 0) return;
  const int m = 5, r = Mesh(world, world.size() / 2, 1, 2).pp_rank();
  Run gpipe = pipelined(world, 0, pp::ScheduleKind::kGPipe, m);
  Run one_f_one_b = pipelined(world, 0, pp::ScheduleKind::kOneFOneB, m);
  // GPipe holds m micro-batches' activations, 1F1B min(p − r, m): measured
  // from the allocator, the ratio of the bytes is the ratio of the counts.
  const double counts = double(m) / std::min(2 - r, m);
  const double bytes = double(gpipe.peak_bytes) / double(one_f_one_b.peak_bytes);
  INFO("stage " << r << ": GPipe " << gpipe.peak_bytes << " B, 1F1B " << one_f_one_b.peak_bytes
                << " B, ratio " << bytes << ", counts' ratio " << counts);
  CHECK(bytes > 0.8 * counts);
  CHECK(bytes < 1.25 * counts);
}

TEST_CASE("pipeline: the tied gradients are summed before ZeRO-1's reduce-scatter (Megatron#844)",
          "[mpi][pp][pp_engine]") {
  auto world = Communicator::world();
  if (world.size() < 4 || world.size() % 2 != 0) return;  // needs dp ≥ 2 to partition
  // n_embd 8: wte (256 × 8) is over half of each stage's flat group, so a dp
  // slice boundary cuts it, at a different row on each stage (2 blocks + wpe
  // before it on the first, 1 block + ln_f on the last). With n_embd 30 wte
  // would sit wholly in one dp rank's slice on both stages and the wrong
  // order would go unseen.
  const int64_t C = 8;
  Run ref = reference(world.size() / 2, 2, C);
  Run right = pipelined(world, 1, pp::ScheduleKind::kOneFOneB, 2, false, C);
  CHECK(max_param_diff(right, ref) < 1e-5);
  // After the reduce-scatter each rank's flat buffer holds its own slice
  // averaged and the rest stale; summing the full tensors then mixes shards.
  // The placements (docs/architecture.md "Placements") turn that silent
  // difference into a named error: wte's gradient entered the reduce-scatter
  // still owing the sum over the embedding group, so the partition owes it,
  // and the later sum of the full tensors does not pay it.
  std::string swapped;
  try {
    pipelined(world, 1, pp::ScheduleKind::kOneFOneB, 2, /*swap_tied_and_dp=*/true, C);
    swapped = "(no error)";
  } catch (const Error& e) {
    swapped = e.what();
  }
  CHECK_THAT(swapped, Catch::Contains("'ZeRO gradient partition 0 (") &&
                          Catch::Contains("is partial(sum) over the embedding group (first and "
                                          "last pipeline stage)"));
}

TEST_CASE("pipeline: ZeRO-2 and ZeRO-3 are refused with pp, naming DeepSpeed's reason",
          "[mpi][pp][pp_engine]") {
  auto world = Communicator::world();
  GPT model(tiny(), 3);
  std::vector<bool> all(model.parameters().size(), true), none(all.size(), false);
  for (int stage : {2, 3}) {
    ZeroOptions o;
    o.stage = stage;
    o.pp = ZeroPipeline{world, all, none};
    CHECK_THROWS_WITH(ZeroOptimizer(model, world, o, sgd),
                      Catch::Contains("incompatible with pipeline parallelism"));
  }
}
