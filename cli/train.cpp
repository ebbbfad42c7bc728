// `minispeed train`: trains a GPT on a file of bytes, in one process or, under
// mpirun, on a dp × tp mesh (parallel/mesh.h): data-parallel with ZeRO over
// dp, tensor-parallel (parallel/tp/tp_gpt.h) over tp. Rank 0 logs; every rank
// computes.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "autograd/grad_mode.h"
#include "cli/agree.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/flops.h"
#include "cli/report.h"
#include "cli/train_config.h"
#include "cli/train_pipeline.h"
#include "nn/data.h"
#include "nn/generate.h"
#include "nn/safetensors.h"  // check_save_path
#include "optim/optimizer.h"
#include "parallel/mesh.h"
#include "parallel/tp/memory_report.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/tp/traffic.h"
#include "parallel/zero/stage.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

namespace {

struct Clock {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

std::string format_duration(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

// The model being trained: the serial GPT, or its tensor-parallel cut. Only
// the loss differs; the parameters the optimizer sees are gpt()'s either way.
struct TrainedModel {
  std::shared_ptr<GPT> serial;  // tp == 1
  std::shared_ptr<TpGPT> tp;    // tp > 1 (serial is then unset)
  GPT& gpt() { return tp ? tp->gpt() : *serial; }
  Module& module() { return tp ? static_cast<Module&>(*tp) : *serial; }
  Tensor loss(const Tensor& x, const Tensor& y) { return tp ? tp->loss(x, y) : serial->loss(x, y); }
  // Collective over tp: a serial model holding the whole weights (ZeRO-3:
  // gather its dp shards first). Without tp, the model itself.
  std::shared_ptr<GPT> whole() { return tp ? tp->gather_serial() : serial; }
};

// Mean validation loss over `batches` global batches. Data-parallel rank r of
// D reads validation window i·D + r for batch i (the data contract), so D
// replicas with batch B evaluate exactly the tokens one process with batch
// D·B does; the tp ranks of a replica read the same window.
double evaluate(TrainedModel& model, const TokenData& data, int64_t batches, int64_t B, int64_t T,
                Mesh& mesh) {
  NoGradGuard no_grad;
  model.module().eval();
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = data.val_batch(i * mesh.dp_size() + mesh.dp_rank(), B, T);
    sum += model.loss(b.x, b.y).item();
  }
  model.module().train();
  Tensor total = full({1}, sum / static_cast<double>(batches), DType::F64);
  mesh.dp().all_reduce(total, ReduceOp::Avg);
  return total.item();
}

}  // namespace

int train_command(int argc, char** argv, Communicator& world) {
  Flags flags = train_flags();
  if (!flags.parse(argc, argv, 2)) return 0;
  // Before any other collective: ranks started with different flags would
  // run collectives of different sizes (a hang or a crash) or train replicas
  // that silently diverge.
  agree_on_flags(world, "train", flags);
  // The flags agree, so every rank reaches the same verdict on them.
  const TrainConfig c = agreed([&] { return read_train_config(flags, world.size()); });
  const bool lead = world.rank() == 0;
  const int64_t B = c.B, T = c.T, steps = c.steps, accum = c.accum;
  // D data-parallel replicas of tp × pp ranks each, Megatron's order (tp
  // fastest, then dp, then pp).
  const int64_t D = c.dp, tp = c.tp, pp = c.pp;
  Mesh mesh(world, static_cast<int>(D), static_cast<int>(tp), static_cast<int>(pp));
  const int64_t zero_stage = c.zero_stage;
  const std::string opt_name = c.optimizer;
  LRSchedule schedule;
  schedule.kind = LRSchedule::parse(c.schedule);
  schedule.max_lr = c.lr;
  schedule.min_lr = c.min_lr;
  schedule.warmup = c.warmup;
  schedule.total_steps = steps;
  // The data first: mapping it is cheap, and TokenData::load refuses what is
  // not a regular file (/dev/zero never ends, a FIFO may never be written).
  const int64_t eval_every = c.eval_every, eval_batches = c.eval_batches;
  TokenData data = [&] {
    ActivityNote loading("loading --data '" + c.data + "'");
    return on_every_rank(world, [&] {
      TokenData d = TokenData::load(c.data);
      MS_CHECK(static_cast<int64_t>(d.train_size()) >= B * T + 1, "--data: '", c.data, "' has ",
               d.train_size(), " training bytes, fewer than one batch (--batch-size ", B,
               " × --seq-len ", T, " + 1)");
      if (eval_every > 0)
        MS_CHECK(static_cast<int64_t>(d.val_size()) >= B * T + 1,
                 "--data: the validation split has ", d.val_size(),
                 " bytes, fewer than one batch; use --eval-every 0 or a smaller batch");
      return d;
    });
  }();

  // Checked before training, not after it: a path that cannot take the
  // weights or the loss curve beside them must not cost the run.
  if (const std::string save_to = flags.str("save-weights"); lead && !save_to.empty()) {
    const std::filesystem::path p(save_to);
    const std::string stem = (p.parent_path() / p.stem()).string();
    for (const std::string& f : {save_to, stem + ".loss.csv", stem + ".loss.svg"})
      check_save_path(f);
  }

  // The model: fresh, or shaped by the weights file.
  std::shared_ptr<GPT> model;
  if (!flags.str("init-from").empty()) {
    // The tensors fix vocab, width, depth and positions; a typed flag for one
    // of them must agree. Heads and dropout are not in the tensors: typed
    // flags apply (--n-head must fit the width and any n_head metadata).
    GPT::LoadOptions load;
    if (flags.given("n-head")) load.n_head = flags.integer("n-head");
    load.n_head_name = "--n-head";
    if (flags.given("dropout")) load.dropout = c.dropout;  // validated with the other flags
    std::string note;  // printed once every check has passed: errors stay one line
    load.note = [&note](const std::string& s) { note = s; };
    load.warn_non_finite = lead;
    model = GPT::from_safetensors(flags.str("init-from"), load);
    const GPTConfig& got = model->config();
    for (const auto& [flag, value] : {std::pair<const char*, int64_t>{"n-layer", got.n_layer},
                                      std::pair<const char*, int64_t>{"n-embd", got.n_embd}})
      MS_CHECK(!flags.given(flag) || flags.integer(flag) == value, "--", flag, " ",
               flags.integer(flag), " contradicts --init-from's model (", got.describe(), ")");
    MS_CHECK(T <= got.block_size, "--seq-len ", T,
             " exceeds the positions of --init-from's model (block_size ", got.block_size, ")");
    if (lead && !note.empty()) std::printf("note: %s; --n-head sets it\n", note.c_str());
  } else {
    check_memory(world, c, c.model);  // before allocating: refuse rather than be OOM-killed
    ActivityNote doing("building the model " + c.model.describe());
    model = std::make_shared<GPT>(c.model, static_cast<uint64_t>(c.seed));
  }
  if (!c.init_from.empty()) check_memory(world, c, model->config());
  const int64_t serial_params = model->num_parameters();

  // Tensor parallelism: every rank built the same serial model; each keeps
  // its tp rank's shards (parallel/tp/tp_gpt.h).
  TrainedModel trained;
  if (tp > 1) {
    trained.tp = on_every_rank(world, [&] {
      const GPTConfig& got = model->config();
      MS_CHECK(got.n_head % tp == 0, "--init-from's model (", got.describe(), ") has n_head ",
               got.n_head, ", which --tp ", tp, " does not divide (each tensor-parallel rank ",
               "computes n_head / tp whole heads)");
      MS_CHECK(got.vocab_size % tp == 0, "--init-from's model (", got.describe(),
               ") has vocab_size ", got.vocab_size, ", which --tp ", tp, " does not divide");
      return std::make_shared<TpGPT>(model, mesh.tp(), c.sequence_parallel);
    });
    model.reset();  // now the tp model's gpt(), at shard shapes: not a serial model any more
  } else {
    trained.serial = model;
  }

  // Parameters per tp rank and one layer's activations, measured before ZeRO-3
  // releases the blocks (parallel/tp/memory_report.h); printed with the memory table.
  // Not under --pp: every rank holds the whole model object there, so "what
  // this rank holds" would count other stages' parameters (the pipeline prints
  // its own per-stage activation line).
  const GPTConfig& shape = trained.gpt().config();
  const std::string tp_memory =
      pp > 1 ? std::string()
             : tp_memory_report(
                   world, shape, held_param_split(trained.gpt()),
                   measure_block_activation_bytes(*trained.gpt().blocks()[0], shape.n_embd, 1,
                                                  c.sequence_parallel ? T / tp : T),
                   {B, T, shape.n_embd, shape.n_head, static_cast<int>(tp), c.sequence_parallel,
                    false, shape.dropout});

  // Pipeline parallelism: every rank holds the whole model object; this rank
  // runs and trains its stage's part (cli/train_pipeline.h).
  std::unique_ptr<TrainPipeline> pipeline;
  if (pp > 1) {
    pp::StageModel parts;
    GPT& g = trained.gpt();
    if (trained.tp) {
      parts.embed = [&trained](const Tensor& x) { return trained.tp->embed(x); };
      parts.head_loss = [&trained](const Tensor& x, const Tensor& y) {
        return trained.tp->head_loss(x, y);
      };
    } else {
      parts.embed = [&g](const Tensor& x) { return g.embed(x); };
      parts.head_loss = [&g](const Tensor& x, const Tensor& y) { return g.head_loss(x, y); };
    }
    parts.block = [&g](int64_t l, const Tensor& x) { return g.blocks()[l]->forward(x); };
    pipeline = on_every_rank(world, [&] {
      const int64_t layers = g.config().n_layer, stages = pp * c.virtual_stages;
      MS_CHECK(layers >= stages, "--init-from's model has ", layers, " blocks, fewer than the ",
               stages, " pipeline stages (--pp ", pp, " × --virtual-stages ", c.virtual_stages,
               "): every stage needs at least one block");
      return std::make_unique<TrainPipeline>(c, g, parts, mesh,
                                             std::vector<int64_t>{B, T, g.config().n_embd});
    });
  }

  // The engine owns the optimizer: which tensors it updates (all parameters,
  // or this rank's ZeRO shard) is what distinguishes the stages.
  const double momentum = flags.real("momentum"), beta1 = flags.real("beta1");
  const double beta2 = flags.real("beta2"), weight_decay = flags.real("weight-decay");
  ZeroOptions zero_opts;
  zero_opts.stage = static_cast<int>(zero_stage);
  zero_opts.precision = c.precision;  // mixed precision: --bf16 / --fp16
  if (pipeline) zero_opts.pp = pipeline->zero_options();
  if (trained.tp)
    zero_opts.tp =
        ZeroTensorParallel{mesh.tp(), trained.tp->replicated_mask(), c.sequence_parallel};
  ZeroOptimizer engine(trained.gpt(), mesh.dp(), zero_opts,
                       [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
                         if (opt_name == "sgd")
                           return std::make_unique<SGD>(std::move(ps), schedule.max_lr, momentum,
                                                        weight_decay);
                         return std::make_unique<AdamW>(std::move(ps), schedule.max_lr, beta1,
                                                        beta2, 1e-8, weight_decay);
                       });

  const GPTConfig& cfg = trained.gpt().config();
  if (lead) {
    std::printf("minispeed train: %s, %lld parameters, %lld rank(s), ZeRO stage %lld\n",
                cfg.describe().c_str(), static_cast<long long>(serial_params),
                static_cast<long long>(world.size()), static_cast<long long>(zero_stage));
    if (world.size() > 1) std::printf("%s", mesh.describe_groups().c_str());
    if (c.precision.enabled()) std::printf("  %s\n", c.precision.describe().c_str());
    if (tp > 1)
      std::printf("  tensor parallel: tp %lld%s, %lld parameters per tp rank\n",
                  static_cast<long long>(tp), c.sequence_parallel ? " + sequence parallel" : "",
                  static_cast<long long>(engine.num_parameters()));
    if (pp > 1)
      std::printf(
          "  pipeline parallel: pp %lld, %s schedule%s, %lld micro-batches per step "
          "(--grad-accum)\n",
          static_cast<long long>(pp), c.pipe_schedule.c_str(),
          c.virtual_stages > 1 ? str_cat(", ", c.virtual_stages, " chunks per rank").c_str() : "",
          static_cast<long long>(accum));
    std::printf(
        "  batch %lld×%lld tokens per replica × %lld micro-steps × %lld replicas = %lld "
        "tokens/step; %s, lr %g (%s)\n",
        static_cast<long long>(B), static_cast<long long>(T), static_cast<long long>(accum),
        static_cast<long long>(D), static_cast<long long>(B * T * accum * D), opt_name.c_str(),
        schedule.max_lr, flags.str("schedule").c_str());
    std::fflush(stdout);
  }

  // Model FLOP/s per rank on the step line, as a fraction of our GEMM's speed
  // measured here (~0.1 s), at this rank's thread count (cli/flops.h). Ψ is the
  // whole model's, counted before tp cut it or ZeRO-3 released its blocks; a
  // tp rank does 1/tp of its replica's FLOPs.
  const double step_flops =
      model_flops_per_step(cfg, serial_params, B * T * accum, T) / static_cast<double>(tp * pp);
  const double gemm_gflops = gemm_peak_gflops(0.1);
  if (lead) {
    std::printf(
        "  model FLOPs per step per rank: %.4f GFLOP (6·Ψ·tokens + attention, cli/flops.h)\n",
        step_flops * 1e-9);
    std::printf("  gemm_f32 peak (512x768x256): %.1f GFLOP/s per rank\n", gemm_gflops);
  }

  std::vector<LossPoint> curve;
  const StepFormula formula = engine.traffic_formula(accum);
  // ZeRO talks on the dp group, tp on the tp group: one meter and one formula
  // each. What came before (the parameter broadcast) is setup.
  StepTraffic traffic(mesh.dp()), tp_traffic(mesh.tp()), pp_traffic(mesh.pp());
  const StepFormula pp_formula = pipeline ? pipeline->traffic_formula() : StepFormula{};
  const StepFormula tp_formula =
      pipeline ? pipeline->tp_traffic_formula(static_cast<int>(tp))
               : tp_step_formula({.B = B,
                                  .T = T,
                                  .C = cfg.n_embd,
                                  .n_layer = cfg.n_layer,
                                  .micro_steps = accum,
                                  .tp = static_cast<int>(tp),
                                  .sequence_parallel = c.sequence_parallel,
                                  .recompute_blocks = zero_stage == 3,
                                  .replicated_grad_numel = engine.replicated_grad_numel()});
  Clock total_clock;
  double last_val = NAN;
  ActivityNote doing("training");
  const int64_t log_every = std::max<int64_t>(1, flags.integer("log-every"));
  for (int64_t step = 0; step < steps; ++step) {
    Clock step_clock;
    traffic.begin_step();
    tp_traffic.begin_step();
    pp_traffic.begin_step();
    // A skipped (overflowed) mixed-precision step does not advance the schedule.
    double lr = schedule.at(step - engine.skipped_steps());
    doing.update(str_cat("training step ", step + 1, " of ", steps));
    double loss_sum = 0, norm = 0;
    if (pipeline) {
      loss_sum = accum * pipeline->step(step, data, engine, lr, flags.real("grad-clip"), &norm);
    } else {
      for (int64_t micro = 0; micro < accum; ++micro) {
        engine.set_gradient_sync(micro + 1 == accum);
        // By dp rank: the tp ranks of a replica read the same window.
        Batch b = data.train_batch(step * accum + micro, mesh.dp_rank(), D, B, T);
        Tensor loss = trained.loss(b.x, b.y);
        loss_sum += loss.item();
        engine.scale_loss(accum > 1 ? mul(loss, 1.0 / static_cast<double>(accum)) : loss)
            .backward();  // fp16: times the loss scale
      }
      norm = engine.step(lr, flags.real("grad-clip"));
    }
    traffic.end_step();
    tp_traffic.end_step();
    pp_traffic.end_step();
    // The loss of the global batch: the mean over every replica's tokens (the
    // tp ranks of a replica already hold the same loss).
    double train_loss = loss_sum / static_cast<double>(accum);
    // The loss exists on the last stage; every stage logs and checks it.
    if (pipeline) train_loss = pipeline->broadcast_loss(train_loss);
    if (D > 1) {
      Tensor l = full({1}, train_loss, DType::F64);
      mesh.dp().all_reduce(l, ReduceOp::Avg);
      train_loss = l.item();
    }
    // Every rank holds the same (all-reduced) loss, so all stop together.
    if (!std::isfinite(train_loss))
      throw AgreedError(str_cat("training diverged: the loss is ",
                                std::isnan(train_loss) ? "NaN" : "infinite", " at step ", step + 1,
                                " (lr ", lr, "); try a lower --lr"));
    double ms = step_clock.seconds() * 1000;
    bool last = step + 1 == steps;
    double val = NAN;
    if (eval_every > 0 && ((step + 1) % eval_every == 0 || last)) {
      // Stage 3 gathers blocks on demand; a pipeline forwards through its stages.
      val = pipeline ? pipeline->evaluate(data, eval_batches)
                     : evaluate(trained, data, eval_batches, B, T, mesh);
      last_val = val;
    }
    curve.push_back({step + 1, train_loss, val, lr});
    if (lead && ((step + 1) % log_every == 0 || last || !std::isnan(val))) {
      double elapsed = total_clock.seconds();
      double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(steps - step - 1);
      std::printf(
          "step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %6.1f ms | %7.0f tok/s | "
          "%5.1f GFLOP/s (%.0f%% of gemm) | eta %s",
          static_cast<long long>(step + 1), static_cast<long long>(steps), train_loss, lr, norm, ms,
          static_cast<double>(B * T * accum * D) / (ms / 1000), step_flops / ms * 1e-6,
          100.0 * step_flops / ms * 1e-6 / gemm_gflops, format_duration(eta).c_str());
      if (!std::isnan(val)) std::printf(" | val %.4f", val);
      if (engine.skipped())  // mixed precision: DeepSpeed's "OVERFLOW! ... Skipping step"
        std::printf(" | %s", engine.skip_message().c_str());
      std::printf("\n");
      std::fflush(stdout);
    }
    int64_t sample_every = flags.integer("sample-every");
    bool sample_now = sample_every > 0 && (step + 1) % sample_every == 0 && !last;
    // Only rank 0 samples, so ZeRO-3's per-block gathers (collectives) can't
    // run inside it: every rank gathers the whole model first (and under tp
    // the shards into one serial model).
    if (sample_now) {
      engine.gather_full_parameters();
      if (pipeline) pipeline->gather_stages();
      std::shared_ptr<GPT> whole = trained.whole();
      if (lead)
        std::printf("--- sample at step %lld ---\n%s\n---\n", static_cast<long long>(step + 1),
                    printable_sample(generate(*whole, "\n", {120, 0.8, 40, 7})).c_str());
    }
  }

  // Per-rank memory: measured beside the ZeRO paper's prediction.
  MemoryReport mine = engine.memory();
  mine.rank = world.rank();
  std::vector<MemoryReport> reports = gather_memory_reports(world, mine);
  // World rank 0 is rank 0 of its dp group and of its tp group: it gets both tables.
  const std::string traffic_table =
      (D > 1 ? traffic_report(mesh.dp(), traffic, formula) : "") +
      (tp > 1 ? traffic_report(mesh.tp(), tp_traffic, tp_formula) : "") +
      (pp > 1 ? traffic_report(mesh.pp(), pp_traffic, pp_formula) : "");
  const std::string pipeline_report = pipeline ? pipeline->measured_report(c.timeline) : "";
  engine.gather_full_parameters();               // stage 3: the whole model, to save it
  if (pipeline) pipeline->gather_stages();       // pp: every stage's part, on every rank
  std::shared_ptr<GPT> whole = trained.whole();  // tp: the shards gathered, on every rank
  if (lead) {
    if (tp > 1)
      std::printf(
          "(under --tp %lld, Ψ below is one tp rank's shards: %lld of the model's %lld "
          "parameters; ZeRO partitions them over the %lld dp ranks)\n",
          static_cast<long long>(tp), static_cast<long long>(engine.num_parameters()),
          static_cast<long long>(serial_params), static_cast<long long>(D));
    std::printf("%s%s", format_memory_table(reports).c_str(), tp_memory.c_str());
    if (tp > 1 && D > 1)
      std::printf("(traffic of world rank 0's dp group and tp group; the other groups' match)\n");
    if (pp > 1)
      std::printf(
          "(under --pp %lld, each rank's memory above is its stage's parameters; every rank also "
          "keeps the whole model object, %lld parameters, to gather the stages for sampling and "
          "saving: not released yet)\n",
          static_cast<long long>(pp), static_cast<long long>(trained.gpt().num_parameters()));
    std::printf("%s", traffic_table.c_str());
    std::printf("%s", pipeline_report.c_str());
    std::printf("trained %lld steps in %s", static_cast<long long>(steps),
                format_duration(total_clock.seconds()).c_str());
    if (!std::isnan(last_val)) std::printf("; final validation loss %.4f nats/byte", last_val);
    std::printf("\n");
    std::string save = flags.str("save-weights");
    if (!save.empty()) {
      std::filesystem::path p(save);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      whole->save_safetensors(save);
      std::string stem = (p.parent_path() / p.stem()).string();
      write_loss_csv(stem + ".loss.csv", curve);
      write_loss_svg(stem + ".loss.svg", curve, "minispeed train: " + cfg.describe());
      std::printf("wrote %s, %s.loss.csv, %s.loss.svg\n", save.c_str(), stem.c_str(), stem.c_str());
    }
    std::printf(
        "--- sample (temperature 0.8, top-k 40) ---\n%s\n",
        printable_sample(generate(*whole, "\n", {flags.integer("sample-tokens"), 0.8, 40, 42}))
            .c_str());
  }
  return 0;
}

}  // namespace ms
