// `minispeed train`: trains a GPT on a file of bytes, in one process or, under
// mpirun, on a dp × tp × pp mesh, as a user of the engine
// (parallel/engine/engine.h): the flags (or --config's ds_config, merged into
// them by cli/train_ds_config.cpp) give the config, cli/train_model.cpp the
// serial model, ms::initialize the rest; the loop is DeepSpeed's
// forward / backward / step, or train_batch under a pipeline. Rank 0 logs
// (the step line: cli/train_step_line.h; the traffic meters:
// cli/train_traffic.h; the tables after the last step: cli/train_end_report.h);
// every rank computes.

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "autograd/grad_mode.h"
#include "cli/agree.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/flops.h"
#include "cli/output_paths.h"
#include "cli/report.h"
#include "cli/train_config.h"
#include "cli/train_device.h"
#include "cli/train_ds_config.h"
#include "cli/train_end_report.h"
#include "cli/train_model.h"
#include "cli/train_moe.h"
#include "cli/train_setup.h"
#include "cli/train_step_line.h"
#include "cli/train_traffic.h"
#include "nn/data.h"
#include "nn/generate.h"
#include "optim/optimizer.h"
#include "parallel/engine/checkpoint_folder.h"  // check_checkpoint_dir
#include "parallel/engine/engine.h"
#include "parallel/engine/pipeline.h"
#include "parallel/mesh.h"
#include "parallel/tp/memory_report.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/stage.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

namespace {

// Mean validation loss over `batches` global batches. Data-parallel rank r of
// D reads validation window i·D + r for batch i (the data contract), so D
// replicas with batch B evaluate exactly the tokens one process with batch
// D·B does; the tp and cp ranks of a replica read the same window (each cp
// rank keeps its positions, parallel/cp/cp_gpt.h). A pipeline
// forwards through its stages (no rank runs the whole model).
// A batch on the run's device: the loader reads bytes on the host, to()
// copies them over (on cuda, one H2D copy per tensor on the device's stream).
Batch on_device(Batch b, Device device) {
  return {b.x.to(device), b.y.to(device)};
}

double evaluate(Engine& engine, const TokenData& data, int64_t batches, int64_t B, int64_t T,
                Device device) {
  if (engine.pipeline()) return engine.pipeline()->evaluate(data, batches);
  Mesh& mesh = engine.mesh();
  NoGradGuard no_grad;
  engine.eval();
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = on_device(data.val_batch(i * mesh.dp_size() + mesh.dp_rank(), B, T), device);
    sum += engine.forward(b.x, b.y).item();
  }
  engine.train();
  Tensor total = full({1}, sum / static_cast<double>(batches), DType::F64);
  // Under cp each rank's loss is its positions' mean (equal counts): the
  // mean over dp × cp is the global mean (the same group as dp when cp = 1).
  mesh.dp_cp().all_reduce(total, ReduceOp::Avg);
  return total.item();
}

}  // namespace

int train_command(int argc, char** argv, Communicator& world) {
  PhaseTimes phases;  // printed after the run: where its time went on rank 0
  Flags flags = train_flags();
  if (!flags.parse(argc, argv, 2)) return 0;
  // Before any other collective: ranks started with different flags would
  // run collectives of different sizes (a hang or a crash) or train replicas
  // that silently diverge.
  agree_on_flags(world, "train", flags);
  // --config's keys become flag values (cli/train_ds_config.h); a file that
  // one machine cannot read ends the job with one message.
  const std::optional<DsConfig> file = on_every_rank(world, [&] {
    std::optional<DsConfig> f = merge_ds_config(flags, world.size());
    if (f) check_engine_supports(*f);  // in the file's words, before the flags' checks
    return f;
  });
  // The file is read on every machine: copies that differ would set different
  // values on different ranks, so the merged flags are compared again.
  if (file) agree_on_flags(world, "train --config", flags);
  // The flags agree, so every rank reaches the same verdict on them.
  const TrainConfig c = agreed([&] { return read_train_config(flags, world.size()); });
  const bool lead = world.rank() == 0;
  bind_rank_device(c.device);  // cuda: this rank's GPU, before anything is allocated there
  const int64_t B = c.B, T = c.T, steps = c.steps, accum = c.accum;
  const int64_t D = c.dp, tp = c.tp, pp = c.pp, cp = c.cp;
  const std::string opt_name = c.optimizer;
  const DsConfig ds = engine_config(c, file);
  agreed([&] { check_engine_supports(ds); });
  if (lead && file) std::printf("%s", describe(ds).c_str());
  // minispeed's own schedule (nanoGPT's warmup + cosine), handed to the
  // engine as DeepSpeed's client lr_scheduler; a file's "scheduler" wins.
  LRSchedule schedule;
  schedule.kind = LRSchedule::parse(c.schedule);
  schedule.max_lr = c.lr;
  schedule.min_lr = c.min_lr;
  schedule.warmup = c.warmup;
  schedule.total_steps = steps;
  const int64_t eval_every = c.eval_every, eval_batches = c.eval_batches;
  TokenData data = load_train_data(world, c);
  // Checked before training, not after it: a path that cannot take the
  // weights, the loss curve beside them or the timeline must not cost the run.
  check_train_outputs(world, flags, c);

  // The engine cuts the serial model for tp and pp and owns the optimizer
  // (ZeroOptimizer: which tensors it updates is what distinguishes the stages).
  InitOptions init;
  init.seq_len = T;
  init.optimizer = [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
    if (opt_name == "sgd")
      return std::make_unique<SGD>(std::move(ps), c.lr, c.momentum, c.weight_decay);
    return std::make_unique<AdamW>(std::move(ps), c.lr, c.beta1, c.beta2, 1e-8, c.weight_decay);
  };
  init.lr_scheduler = [schedule](int64_t k) { return schedule.at(k); };
  init.lr_scheduler_name = c.schedule;
  // Parameters per tp rank and one layer's activations, measured before ZeRO-3
  // releases the blocks (parallel/tp/memory_report.h); printed with the memory
  // table. Not under --pp: every rank holds the whole model object there, so
  // "what this rank holds" would count other stages' parameters (the pipeline
  // prints its own per-stage activation line).
  std::string tp_memory;
  init.before_partition = [&](GPT& held) {
    // MoE: the report's split/replicated formula is the dense GPT's; the
    // experts' per-rank table comes with expert parallelism (--ep, planned).
    // Under --cp the blocks run the cp attention (collective, on T/cp
    // positions): the cp memory line below measures them instead. It
    // measures host allocations of a CPU forward: not on a device.
    if (pp > 1 || cp > 1 || c.model.moe.enabled() || c.device != Device::CPU) return;
    const GPTConfig& shape = held.config();
    tp_memory = tp_memory_report(
        world, shape, held_param_split(held),
        measure_layer_activations(*held.blocks()[0], shape.n_embd, 1,
                                  c.sequence_parallel ? T / tp : T),
        {B, T, shape.n_embd, shape.n_head, static_cast<int>(tp), c.sequence_parallel,
         c.sequence_parallel, shape.dropout, shape.attn_dropout});
  };
  Engine engine = [&] {
    std::shared_ptr<GPT> model = build_train_model(world, flags, c);
    move_model_to(*model, c.device);  // before the engine cuts, flattens or wraps it
    return on_every_rank(world, [&] { return initialize(model, ds, world, init).engine; });
  }();
  const int64_t serial_params = engine.num_parameters();
  ZeroOptimizer& zero = engine.zero_optimizer();
  TrainPipeline* pipeline = engine.pipeline();
  Mesh& mesh = engine.mesh();

  // --resume (parallel/engine/checkpoint.h): any saved layout loads into this one.
  std::map<std::string, std::string> run_flags;  // kept in each checkpoint, for the record
  for (const auto& [flag, value] : flags.values()) run_flags[flag] = value;
  int64_t first_step = 0;
  if (c.save_every > 0)  // a bad --checkpoint-dir fails now, not at the first save
    on_every_rank(world, [&] { return check_checkpoint_dir(c.checkpoint_dir), 0; });
  if (!c.resume.empty()) {
    first_step = engine.load_checkpoint(c.checkpoint_dir, c.resume).step;
    if (first_step >= steps)
      throw AgreedError(str_cat("--resume ", c.resume, ": the checkpoint is at step ", first_step,
                                ", and --steps ", steps, " leaves nothing to train"));
    if (lead)
      std::printf("resumed from '%s' at step %lld\n", c.resume.c_str(),
                  static_cast<long long>(first_step));
  }

  const GPTConfig& cfg = engine.gpt().config();
  print_run_header(world, engine, c, serial_params);

  const StepRate rate = measure_step_rate(c, cfg, serial_params, lead);

  std::vector<LossPoint> curve;
  TrainTraffic traffic(engine, c);  // the step's bytes per group, beside their formulas
  Clock total_clock;
  double last_val = NAN;
  ActivityNote doing("training");
  const int64_t log_every = std::max<int64_t>(1, flags.integer("log-every"));
  const int64_t skipped_before = zero.skipped_steps();  // a resumed run's earlier skips
  const MasterWeights::Transfers offload_before = zero.offload_transfers();
  phases.charge(PhaseTimes::Startup);
  for (int64_t step = first_step; step < steps; ++step) {
    Clock step_clock;
    traffic.begin_step();
    const double lr = engine.get_lr();            // the rate this step's update uses
    const double step_scale = zero.loss_scale();  // what this step's backward multiplies by
    doing.update(str_cat("training step ", step + 1, " of ", steps));
    // Micro-step k of step s on dp rank r reads window (s·G + k)·D + r (the
    // data contract); the tp, cp and pp ranks of a replica read the same
    // windows (a cp rank keeps its positions of them).
    int64_t window = step * accum;
    auto next = [&] {
      return on_device(data.train_batch(window++, mesh.dp_rank(), D, B, T), c.device);
    };
    double local_loss = 0;  // this rank's mean over its micro-batches
    if (pipeline) {
      local_loss = engine.train_batch_unreduced(next);  // the whole step through the schedule
      phases.charge(PhaseTimes::Schedule);
    } else {
      // DeepSpeed's loop: step() after every micro-batch, the update at the last.
      double loss_sum = 0;
      for (int64_t micro = 0; micro < accum; ++micro) {
        Batch b = next();
        Tensor loss = engine.forward(b.x, b.y);
        loss_sum += loss.item();
        phases.charge(PhaseTimes::Forward);
        engine.backward(loss);
        phases.charge(PhaseTimes::Backward);
        engine.step();
        phases.charge(PhaseTimes::Step);
      }
      local_loss = loss_sum / static_cast<double>(accum);
    }
    const double norm = engine.last_grad_norm();
    traffic.end_step();
    // The loss of the global batch: the mean over every replica's tokens (not
    // metered as the step's traffic: the formulas count the training's).
    const double train_loss = engine.reduce_loss(local_loss);
    // Every rank holds the same (all-reduced) loss, so all stop together.
    if (!std::isfinite(train_loss))
      throw AgreedError(str_cat("training diverged: the loss is ",
                                std::isnan(train_loss) ? "NaN" : "infinite", " at step ", step + 1,
                                " (lr ", lr, "); try a lower --lr"));
    double ms = step_clock.seconds() * 1000;
    bool last = step + 1 == steps;
    const std::string moe_fields =
        moe_step_fields(engine.gpt());  // every rank: resets the step's counts
    double val = NAN;
    if (eval_every > 0 && ((step + 1) % eval_every == 0 || last)) {
      phases.charge(PhaseTimes::LossAndLog);
      val =
          evaluate(engine, data, eval_batches, B, T, c.device);  // stage 3 gathers blocks on demand
      last_val = val;
      phases.charge(PhaseTimes::Eval);
    }
    curve.push_back({step + 1, train_loss, val, lr});
    if (lead && ((step + 1) % log_every == 0 || last || !std::isnan(val))) {
      double elapsed = total_clock.seconds();
      double eta = elapsed / static_cast<double>(step + 1 - first_step) *
                   static_cast<double>(steps - step - 1);
      print_step_line(c, rate, zero,
                      {.step = step + 1,
                       .train_loss = train_loss,
                       .lr = lr,
                       .norm = norm,
                       .loss_scale = step_scale,
                       .ms = ms,
                       .eta_seconds = eta,
                       .val = val,
                       .moe_fields = moe_fields});
    }
    phases.charge(PhaseTimes::LossAndLog);
    if (c.save_every > 0 && (step + 1) % c.save_every == 0) {  // checkpoints
      const std::string where = engine.save_checkpoint(c.checkpoint_dir, "", run_flags);
      if (lead) std::printf("saved checkpoint %s\n", where.c_str());
    }
    int64_t sample_every = flags.integer("sample-every");
    bool sample_now = sample_every > 0 && (step + 1) % sample_every == 0 && !last;
    // Only rank 0 samples, so ZeRO-3's per-block gathers (collectives) can't
    // run inside it: every rank gathers the whole model first (and under tp
    // the shards into one serial model).
    if (sample_now) {
      std::shared_ptr<GPT> whole = engine.gather_model();
      if (lead) whole = host_copy(whole);  // sampling reads the logits on the host
      if (lead)
        std::printf("--- sample at step %lld ---\n%s\n---\n", static_cast<long long>(step + 1),
                    printable_sample(generate(*whole, "\n", {120, 0.8, 40, 7})).c_str());
    }
    phases.charge(PhaseTimes::SaveOrSample);
  }

  // A run in which every step was skipped on overflow is an error.
  check_some_step_updated(c, zero, steps - first_step, zero.skipped_steps() - skipped_before);
  // Collective: the memory and traffic tables (rank 0 prints them below).
  EndOfRunReport report = gather_end_of_run_report(world, engine, c, traffic);
  // The timeline is a picture; the weights are the run. A timeline that fails
  // to write (a disk filled since the check above) is reported after the
  // weights are saved, not instead of them.
  std::string timeline_error;
  if (pipeline) {
    try {
      report.pipeline = pipeline->measured_report(c.timeline);  // its last act writes the file
    } catch (const Error& e) {
      timeline_error = e.what();
    }
  }
  std::shared_ptr<GPT> whole = engine.gather_model();  // every shard and stage, on every rank
  // What --save-weights writes: fp32, the masters in a 16-bit run (collective).
  std::map<std::string, Tensor> weights = flags.str("save-weights").empty()
                                              ? std::map<std::string, Tensor>{}
                                              : engine.fp32_weights(*whole);
  // Saving and sampling are host work: the weights and the model come to the
  // CPU (to(Device::CPU); the identity on a CPU run).
  for (auto& [name, t] : weights) t = t.to(Device::CPU);
  report.device_memory =
      device_memory_lines(c, zero, world.rank(), offload_before, steps - first_step);
  report.tp_memory = tp_memory;
  if (lead) whole = host_copy(whole);
  if (lead) {
    print_end_of_run_report(c, engine, report, serial_params);
    std::printf("trained %lld steps in %s", static_cast<long long>(steps),
                format_duration(total_clock.seconds()).c_str());
    if (!std::isnan(last_val)) std::printf("; final validation loss %.4f nats/byte", last_val);
    std::printf("\n");
    std::string save = flags.str("save-weights");
    if (!save.empty()) {
      std::filesystem::path p(save);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      whole->save_safetensors(save, weights);
      std::string stem = (p.parent_path() / p.stem()).string();
      write_loss_csv(stem + ".loss.csv", curve);
      write_loss_svg(stem + ".loss.svg", curve, "minispeed train: " + cfg.describe());
      std::printf("wrote %s, %s.loss.csv, %s.loss.svg\n", save.c_str(), stem.c_str(), stem.c_str());
    }
    phases.charge(PhaseTimes::End);
    std::printf("%s\n", phases.line(world.rank()).c_str());
    std::printf(
        "--- sample (temperature 0.8, top-k 40) ---\n%s\n",
        printable_sample(generate(*whole, "\n", {flags.integer("sample-tokens"), 0.8, 40, 42}))
            .c_str());
  }
  if (!timeline_error.empty()) throw Error(timeline_error);
  return 0;
}

}  // namespace ms