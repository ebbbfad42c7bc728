// `minispeed train`: trains a GPT on a file of bytes, in one process or, under
// mpirun, data-parallel with ZeRO. Rank 0 logs; every rank computes.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "autograd/grad_mode.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/flops.h"
#include "cli/report.h"
#include "nn/data.h"
#include "nn/generate.h"
#include "optim/optimizer.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

namespace {

Flags train_flags() {
  Flags f("minispeed train",
          "Train a GPT-2-style model on raw bytes (vocabulary 256).\n"
          "Under `mpirun -np N`, --batch-size is per rank and the N ranks train data-parallel.");
  f.add("data", "data/tinyshakespeare.txt",
        "file of raw bytes; first 90% trains, the rest validates");
  f.add("n-layer", "4", "transformer blocks");
  f.add("n-head", "4", "attention heads (must divide --n-embd)");
  f.add("n-embd", "128", "embedding width C");
  f.add("seq-len", "128", "tokens per sequence T (also the model's positions for a new model)");
  f.add("batch-size", "16", "sequences per micro-step per rank B");
  f.add("grad-accum", "1", "micro-steps per optimizer step (gradient accumulation)");
  f.add("steps", "300", "optimizer steps");
  f.add("lr", "1e-3", "peak learning rate");
  f.add("min-lr", "0", "final learning rate of the cosine schedule");
  f.add("schedule", "cosine", "constant | cosine (linear warmup, then cosine decay to --min-lr)");
  f.add("warmup", "0", "warmup steps of the cosine schedule");
  f.add("optimizer", "adamw", "sgd | adamw");
  f.add("momentum", "0.9", "SGD momentum");
  f.add("beta1", "0.9", "AdamW beta1");
  f.add("beta2", "0.95", "AdamW beta2");
  f.add("weight-decay", "0.1", "weight decay (decoupled for AdamW)");
  f.add("grad-clip", "1.0", "clip the global gradient norm to this value (0 = off)");
  f.add("dropout", "0", "dropout probability");
  f.add("seed", "1337", "seed for initialization and dropout");
  f.add("init-from", "",
        "start from these weights (.safetensors); the model shape comes from the file");
  f.add("save-weights", "",
        "write the final weights here (.safetensors); the loss curve goes beside it");
  f.add("eval-every", "100", "evaluate validation loss every N steps and at the end (0 = never)");
  f.add("eval-batches", "8", "validation batches (of the global batch) per evaluation");
  f.add("sample-every", "0",
        "print a sample every N steps (0 = never); a sample is always printed at the end");
  f.add("sample-tokens", "300", "bytes to sample at the end");
  f.add("zero-stage", "0", "ZeRO stage 0 (plain data parallel) | 1 | 2 | 3");
  f.add("log-every", "1", "print a step line every N steps");
  return f;
}

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

// Mean validation loss over `batches` global batches. Rank r of D reads
// validation window i·D + r for batch i (the data contract), so D ranks with
// batch B evaluate exactly the tokens one process with batch D·B does.
double evaluate(GPT& model, const TokenData& data, int64_t batches, int64_t B, int64_t T,
                Communicator& world) {
  NoGradGuard no_grad;
  model.eval();
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = data.val_batch(i * world.size() + world.rank(), B, T);
    sum += model.loss(b.x, b.y).item();
  }
  model.train();
  Tensor total = full({1}, sum / static_cast<double>(batches), DType::F64);
  world.all_reduce(total, ReduceOp::Avg);
  return total.item();
}

}  // namespace

int train_command(int argc, char** argv, Communicator& world) {
  Flags flags = train_flags();
  if (!flags.parse(argc, argv, 2)) return 0;
  const bool lead = world.rank() == 0;
  const int64_t B = flags.integer("batch-size"), T = flags.integer("seq-len");
  const int64_t steps = flags.integer("steps"), accum = flags.integer("grad-accum");
  const int64_t D = world.size();
  MS_CHECK(B > 0, "--batch-size must be positive, got ", B);
  MS_CHECK(T > 0, "--seq-len must be positive, got ", T);
  MS_CHECK(steps >= 0, "--steps must be >= 0, got ", steps);
  MS_CHECK(accum > 0, "--grad-accum must be positive, got ", accum);
  const int64_t zero_stage = flags.integer("zero-stage");
  MS_CHECK(zero_stage >= 0 && zero_stage <= 3, "--zero-stage must be 0, 1, 2 or 3, got ",
           zero_stage);
  const std::string opt_name = flags.str("optimizer");
  MS_CHECK(opt_name == "sgd" || opt_name == "adamw", "--optimizer: unknown optimizer '", opt_name,
           "' (valid: sgd, adamw)");
  LRSchedule schedule;
  schedule.kind = LRSchedule::parse(flags.str("schedule"));
  schedule.max_lr = flags.real("lr");
  schedule.min_lr = flags.real("min-lr");
  schedule.warmup = flags.integer("warmup");
  schedule.total_steps = steps;

  // The model: fresh, or shaped by the weights file.
  std::shared_ptr<GPT> model;
  if (!flags.str("init-from").empty()) {
    model = GPT::from_safetensors(flags.str("init-from"));
    MS_CHECK(T <= model->config().block_size, "--seq-len ", T,
             " exceeds the positions of --init-from's model (block_size ",
             model->config().block_size, ")");
  } else {
    GPTConfig cfg;
    cfg.n_layer = flags.integer("n-layer");
    cfg.n_head = flags.integer("n-head");
    cfg.n_embd = flags.integer("n-embd");
    cfg.block_size = T;
    cfg.dropout = flags.real("dropout");
    MS_CHECK(cfg.n_head > 0 && cfg.n_embd > 0 && cfg.n_embd % cfg.n_head == 0, "--n-embd ",
             cfg.n_embd, " must be a positive multiple of --n-head ", cfg.n_head);
    MS_CHECK(cfg.n_layer > 0, "--n-layer must be positive, got ", cfg.n_layer);
    MS_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "--dropout must be in [0, 1), got ", cfg.dropout);
    model = std::make_shared<GPT>(cfg, static_cast<uint64_t>(flags.integer("seed")));
  }
  TokenData data = TokenData::load(flags.str("data"));
  MS_CHECK(static_cast<int64_t>(data.train_size()) >= B * T + 1, "--data: '", flags.str("data"),
           "' has ", data.train_size(), " training bytes, fewer than one batch (--batch-size ", B,
           " × --seq-len ", T, " + 1)");
  const int64_t eval_every = flags.integer("eval-every"),
                eval_batches = flags.integer("eval-batches");
  if (eval_every > 0)
    MS_CHECK(static_cast<int64_t>(data.val_size()) >= B * T + 1,
             "--data: the validation split has ", data.val_size(),
             " bytes, fewer than one batch; use --eval-every 0 or a smaller batch");

  // The engine owns the optimizer: which tensors it updates (all parameters,
  // or this rank's ZeRO shard) is what distinguishes the stages.
  const double momentum = flags.real("momentum"), beta1 = flags.real("beta1");
  const double beta2 = flags.real("beta2"), weight_decay = flags.real("weight-decay");
  ZeroOptions zero_opts;
  zero_opts.stage = static_cast<int>(zero_stage);
  ZeroOptimizer engine(
      *model, world, zero_opts, [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
        if (opt_name == "sgd")
          return std::make_unique<SGD>(std::move(ps), schedule.max_lr, momentum, weight_decay);
        return std::make_unique<AdamW>(std::move(ps), schedule.max_lr, beta1, beta2, 1e-8,
                                       weight_decay);
      });

  if (lead) {
    std::printf("minispeed train: %s, %lld parameters, %lld rank(s), ZeRO stage %lld\n",
                model->config().describe().c_str(), static_cast<long long>(engine.num_parameters()),
                static_cast<long long>(D), static_cast<long long>(zero_stage));
    std::printf(
        "  batch %lld×%lld tokens per rank × %lld micro-steps × %lld ranks = %lld tokens/step; %s, "
        "lr %g (%s)\n",
        static_cast<long long>(B), static_cast<long long>(T), static_cast<long long>(accum),
        static_cast<long long>(D), static_cast<long long>(B * T * accum * D), opt_name.c_str(),
        schedule.max_lr, flags.str("schedule").c_str());
    std::fflush(stdout);
  }

  // Model FLOP/s per rank on the step line, as a fraction of our GEMM's speed
  // measured here (~0.1 s), at this rank's thread count (cli/flops.h).
  const double step_flops =
      model_flops_per_step(model->config(), model->num_parameters(), B * T * accum, T);
  const double gemm_gflops = gemm_peak_gflops(0.1);
  if (lead) std::printf("  gemm_f32 peak (512x768x256): %.1f GFLOP/s per rank\n", gemm_gflops);

  std::vector<LossPoint> curve;
  Clock total_clock;
  double last_val = NAN;
  const int64_t log_every = std::max<int64_t>(1, flags.integer("log-every"));
  for (int64_t step = 0; step < steps; ++step) {
    Clock step_clock;
    double lr = schedule.at(step);
    double loss_sum = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      engine.set_gradient_sync(micro + 1 == accum);
      Batch b = data.train_batch(step * accum + micro, world.rank(), D, B, T);
      Tensor loss = model->loss(b.x, b.y);
      loss_sum += loss.item();
      (accum > 1 ? mul(loss, 1.0 / static_cast<double>(accum)) : loss).backward();
    }
    double norm = engine.step(lr, flags.real("grad-clip"));
    // The loss of the global batch: the mean over every rank's tokens.
    double train_loss = loss_sum / static_cast<double>(accum);
    if (D > 1) {
      Tensor l = full({1}, train_loss, DType::F64);
      world.all_reduce(l, ReduceOp::Avg);
      train_loss = l.item();
    }
    double ms = step_clock.seconds() * 1000;
    bool last = step + 1 == steps;
    double val = NAN;
    if (eval_every > 0 && ((step + 1) % eval_every == 0 || last)) {
      val = evaluate(*model, data, eval_batches, B, T, world);  // stage 3 gathers blocks on demand
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
      std::printf("\n");
      std::fflush(stdout);
    }
    int64_t sample_every = flags.integer("sample-every");
    bool sample_now = sample_every > 0 && (step + 1) % sample_every == 0 && !last;
    // Only rank 0 samples, so ZeRO-3's per-block gathers (collectives) can't
    // run inside it: every rank gathers the whole model first.
    if (sample_now) engine.gather_full_parameters();
    if (lead && sample_now) {
      std::printf("--- sample at step %lld ---\n%s\n---\n", static_cast<long long>(step + 1),
                  generate(*model, "\n", {120, 0.8, 40, 7}).c_str());
    }
  }

  // Per-rank memory: measured beside the ZeRO paper's prediction.
  std::vector<MemoryReport> reports = gather_memory_reports(world, engine.memory());
  engine.gather_full_parameters();  // stage 3: the whole model, to save it
  if (lead) {
    std::printf("%s", format_memory_table(reports).c_str());
    std::printf("trained %lld steps in %s", static_cast<long long>(steps),
                format_duration(total_clock.seconds()).c_str());
    if (!std::isnan(last_val)) std::printf("; final validation loss %.4f nats/byte", last_val);
    std::printf("\n");
    std::string save = flags.str("save-weights");
    if (!save.empty()) {
      std::filesystem::path p(save);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      model->save_safetensors(save);
      std::string stem = (p.parent_path() / p.stem()).string();
      write_loss_csv(stem + ".loss.csv", curve);
      write_loss_svg(stem + ".loss.svg", curve, "minispeed train: " + model->config().describe());
      std::printf("wrote %s, %s.loss.csv, %s.loss.svg\n", save.c_str(), stem.c_str(), stem.c_str());
    }
    std::printf("--- sample (temperature 0.8, top-k 40) ---\n%s\n",
                generate(*model, "\n", {flags.integer("sample-tokens"), 0.8, 40, 42}).c_str());
  }
  return 0;
}

}  // namespace ms
