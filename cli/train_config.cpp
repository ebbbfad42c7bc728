#include "cli/train_config.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "cli/checked.h"
#include "cli/train_moe.h"
#include "cli/train_device.h"
#include "optim/optimizer.h"
#include "parallel/pp/schedule.h"

namespace ms {

Flags train_flags() {
  Flags f("minispeed train",
          "Train a GPT-2-style model on raw bytes (vocabulary 256).\n"
          "Under `mpirun -np N`, the N ranks form N / --tp data-parallel replicas of --tp\n"
          "tensor-parallel ranks each; --batch-size is per replica (the tp ranks of a replica\n"
          "read the same batch; --cp ranks each keep --seq-len / --cp positions of it); every rank\n"
          "must be given the same flags (checked at start).\n"
          "Environment: MS_COMM_TIMEOUT=S aborts the job, naming the collective, when one waits\n"
          "more than S seconds for the other ranks (default 600; 0 = wait forever).");
  f.add("config", "",
        "a DeepSpeed ds_config.json (configs/): its keys set what the flags set; a flag that "
        "contradicts a key it gives is an error");
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
  f.add("dropout", "0", "residual and embedding dropout probability (HF resid_pdrop, embd_pdrop)");
  f.add("attn-dropout", "0",
        "dropout on the attention probabilities (HF attn_pdrop; HF's default is 0.1, ours 0 "
        "so a run changes only when asked)");
  f.add("seed", "1337", "seed for initialization and dropout");
  f.add("init-from", "",
        "start from these weights (.safetensors); the model shape comes from the file");
  f.add("save-weights", "",
        "write the final weights here (.safetensors); the loss curve goes beside it");
  // Checkpoints (parallel/engine/checkpoint.h).
  f.add("save-every", "0", "save a checkpoint every N steps into --checkpoint-dir (0 = never)");
  f.add("checkpoint-dir", "", "the folder of checkpoints (one sub-folder per tag, and 'latest')");
  f.add("resume", "", "latest | TAG: resume from this checkpoint of --checkpoint-dir");
  f.add("eval-every", "100", "evaluate validation loss every N steps and at the end (0 = never)");
  f.add("eval-batches", "8", "validation batches (of the global batch) per evaluation");
  f.add("sample-every", "0",
        "print a sample every N steps (0 = never); a sample is always printed at the end");
  f.add("sample-tokens", "300", "bytes to sample at the end");
  f.add("zero-stage", "0",
        "ZeRO stage 0 (plain data parallelism) | 1 | 2 | 3, over the data-parallel ranks");
  f.add("tp", "1",
        "tensor-parallel ranks per model replica (Megatron: each layer's matrices split over "
        "them, ranks tp-fastest); must divide the ranks, --n-head and the vocabulary (256)");
  f.add_switch("sequence-parallel",
               "with --tp > 1: LayerNorm, dropout and the residual run on --seq-len / --tp "
               "positions per tp rank (Korthikanti et al. 2022); --seq-len % --tp must be 0");
  f.add_switch(
      "checkpoint-activations",
      "recompute every block in backward, keeping only its input (nn/checkpointed_block.h): "
      "one more forward per block for B·T·C values per layer instead of ~16·B·T·C + "
      "n_head·B·T²");
  f.add("pp", "1",
        "pipeline stages per model replica (the blocks split uniformly, ranks laid out tp, then "
        "dp, then pp); --tp × --pp must divide the ranks; micro-batches per step = --grad-accum");
  f.add("cp", "1",
        "context-parallel ranks per model replica (each holds --seq-len / --cp positions of every "
        "sequence; ranks laid out tp, then cp, then dp, then pp, Megatron's order); --cp × --tp × "
        "--pp must divide the ranks; gradients are averaged and ZeRO partitions over dp × cp");
  f.add("cp-algo", "ulysses",
        "with --cp > 1, how attention sees the whole sequence: ulysses (all-to-all to whole "
        "sequences of n_head / (--tp·--cp) heads) | ring (K/V blocks around the cp ring) | zigzag "
        "(ring, rank r holding chunks r and 2·cp−1−r of 2·cp) | allgather (every rank gathers all "
        "q/k/v: the simple reference)");
  f.add("pipe-schedule", "1f1b",
        "with --pp > 1: gpipe | 1f1b | interleaved (interleaved: --grad-accum a multiple of --pp)");
  f.add("virtual-stages", "1", "with --pipe-schedule interleaved: model chunks per pipeline rank");
  f.add("timeline", "",
        "with --pp > 1: draw the measured pipeline of the last step as SVG (stages as rows)");
  f.add("log-every", "1", "print a step line every N steps");
  add_device_flags(f);  // --device, --offload-optimizer (cli/train_device.h)
  // ---- mixed precision (parallel/zero/mixed_precision.h; ds_config's fp16/bf16 keys) ----
  f.add_switch("bf16", "bf16 parameters, gradients and activations, fp32 master weights and "
                       "optimizer state (no loss scaling)");
  f.add_switch("fp16", "f16 parameters, gradients and activations, fp32 master weights and "
                       "optimizer state, dynamic loss scaling (DeepSpeed's algorithm)");
  f.add("loss-scale", "0", "with --fp16: 0 = dynamic loss scaling, else this static scale, in [2^-40, 2^40]");
  f.add("initial-scale-power", "16", "with --fp16: the dynamic scale starts at 2^N");
  f.add("loss-scale-window", "1000", "with --fp16: clean steps before the scale doubles");
  f.add("hysteresis", "2", "with --fp16: the scale halves at the N-th overflow since it last grew (DeepSpeed's delayed_shift: 2 tolerates 1)");
  f.add("min-loss-scale", "1", "with --fp16: the scale never goes below this (error there)");
  f.add("communication-data-type", "",
        "with --bf16/--fp16: fp32 reduces gradients in fp32 (default: the 16-bit dtype)");
  add_moe_flags(f);  // cli/train_moe.h
  return f;
}

namespace {

// Range checks quote the flag as typed, so "--lr nan" reads back as "nan".
struct Checker {
  const Flags& f;
  double real(const std::string& name, bool ok(double), const std::string& range) const {
    double v = f.real(name);
    MS_CHECK(ok(v), "--", name, " must be ", range, ", got ", f.str(name));
    return v;
  }
  int64_t integer(const std::string& name, int64_t lo, int64_t hi, const std::string& range) const {
    int64_t v = f.integer(name);
    MS_CHECK(v >= lo && v <= hi, "--", name, " must be ", range, ", got ", v);
    return v;
  }
};

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

}  // namespace

TrainConfig read_train_config(const Flags& flags, int64_t ranks) {
  Checker check{flags};
  TrainConfig c;
  c.data = flags.str("data");
  MS_CHECK(!c.data.empty(), "--data must name a file of raw bytes");
  c.init_from = flags.str("init-from");
  c.save_weights = flags.str("save-weights");
  c.B = check.integer("batch-size", 1, kMax, "positive");
  c.T = check.integer("seq-len", 1, kMax, "positive");
  c.steps = check.integer("steps", 0, kMax, ">= 0");
  // Checkpoints.
  c.save_every = check.integer("save-every", 0, kMax, ">= 0");
  c.checkpoint_dir = flags.str("checkpoint-dir");
  c.resume = flags.str("resume");
  MS_CHECK(c.resume.empty() || !c.checkpoint_dir.empty(), "--resume ", c.resume,
           " needs --checkpoint-dir DIR (the folder holding the checkpoints and 'latest')");
  MS_CHECK(c.save_every == 0 || !c.checkpoint_dir.empty(), "--save-every ", c.save_every,
           " needs --checkpoint-dir DIR (where to write the checkpoints)");
  c.accum = check.integer("grad-accum", 1, kMax, "positive");
  c.zero_stage = check.integer("zero-stage", 0, 3, "0, 1, 2 or 3");
  c.tp = check.integer("tp", 1, kMax, "positive");
  MS_CHECK(ranks % c.tp == 0, "--tp ", c.tp, " does not divide the ", ranks,
           " ranks: the ranks form (ranks / --tp) data-parallel replicas of --tp ranks each");
  c.pp = check.integer("pp", 1, kMax, "positive");
  MS_CHECK((ranks / c.tp) % c.pp == 0, "--tp ", c.tp, " × --pp ", c.pp, " does not divide the ",
           ranks,
           " ranks: the ranks form (ranks / (--tp × --pp)) data-parallel replicas of --tp × --pp "
           "ranks each");
  c.cp = check.integer("cp", 1, kMax, "positive");
  MS_CHECK((ranks / c.tp / c.pp) % c.cp == 0, "--cp ", c.cp, " × --tp ", c.tp, " × --pp ", c.pp,
           " does not divide the ", ranks,
           " ranks: the ranks form (ranks / (--cp × --tp × --pp)) data-parallel replicas of "
           "--cp × --tp × --pp ranks each");
  c.dp = ranks / c.tp / c.pp / c.cp;
  c.cp_algo = flags.str("cp-algo");
  MS_CHECK(c.cp_algo == "ulysses" || c.cp_algo == "ring" || c.cp_algo == "zigzag" ||
               c.cp_algo == "allgather",
           "--cp-algo: unknown algorithm '", c.cp_algo,
           "' (valid: ulysses, ring, zigzag, allgather)");
  c.pipe_schedule = flags.str("pipe-schedule");
  c.timeline = flags.str("timeline");
  const pp::ScheduleKind kind = pp::parse_schedule_kind(c.pipe_schedule);  // names the choices
  c.virtual_stages = check.integer("virtual-stages", 1, 1 << 20, "positive");
  MS_CHECK(c.virtual_stages == 1 || kind == pp::ScheduleKind::kInterleaved, "--virtual-stages ",
           c.virtual_stages, " needs --pipe-schedule interleaved (got ", c.pipe_schedule, ")");
  // Read before the --pp checks below, which refuse it with --pp.
  c.sequence_parallel = flags.on("sequence-parallel");
  if (c.pp > 1) {
    MS_CHECK(c.zero_stage < 2, "--zero-stage ", c.zero_stage, " with --pp ", c.pp,
             ": ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism (DeepSpeed's "
             "PipelineEngine refuses them): they reduce-scatter gradients on every "
             "micro-batch, --grad-accum times per step; use --zero-stage 0 or 1");
    MS_CHECK(kind != pp::ScheduleKind::kInterleaved || c.accum % c.pp == 0,
             "--pipe-schedule interleaved needs --grad-accum (the micro-batches, ", c.accum,
             ") to be a multiple of --pp ", c.pp,
             " (the micro-batches go through the model chunks in groups of --pp)");
    MS_CHECK(!c.sequence_parallel, "--sequence-parallel with --pp ", c.pp,
             " is not supported yet (planned): the activations between stages would be "
             "(B, T / --tp, C)");
  } else {
    MS_CHECK(flags.str("timeline").empty(), "--timeline needs --pp > 1 (it draws the pipeline)");
    MS_CHECK(c.virtual_stages == 1, "--virtual-stages ", c.virtual_stages,
             " needs --pp > 1 (it interleaves model chunks over the pipeline ranks)");
  }
  c.checkpoint_activations = flags.on("checkpoint-activations");
  c.device = read_device_flag(flags);
  c.offload_optimizer = flags.on("offload-optimizer");
  c.precision = mixed_precision_from_flags(  // mixed precision: the library checks the values
      flags.on("bf16"), flags.on("fp16"), flags.real("loss-scale"),
      flags.integer("initial-scale-power"), flags.integer("loss-scale-window"),
      flags.integer("hysteresis"), flags.real("min-loss-scale"), flags.str("communication-data-type"),
      c.tp, c.pp);
  MS_CHECK(!c.sequence_parallel || c.tp > 1,
           "--sequence-parallel needs --tp > 1 (it splits the "
           "sequence over the tensor-parallel ranks; with --tp ",
           c.tp, " there are none)");
  // Our vocabulary is the 256 bytes; each tp rank owns 256 / --tp rows of wte.
  MS_CHECK(
      256 % c.tp == 0, "--tp ", c.tp, " does not divide the vocabulary of 256 bytes (each ",
      "tensor-parallel rank owns vocabulary / --tp rows of the embedding): use 1, 2, 4, 8, ...");
  c.optimizer = flags.str("optimizer");
  MS_CHECK(c.optimizer == "sgd" || c.optimizer == "adamw", "--optimizer: unknown optimizer '",
           c.optimizer, "' (valid: sgd, adamw)");
  c.schedule = flags.str("schedule");
  LRSchedule::parse(c.schedule);  // throws naming the valid schedules

  auto non_negative = [](double v) { return std::isfinite(v) && v >= 0; };
  auto unit = [](double v) { return v >= 0 && v < 1; };  // false for NaN
  // 0 is allowed, as torch.optim and DeepSpeed allow it: evaluation-only runs
  // (and a frozen warm-up) train at lr 0.
  c.lr = check.real("lr", non_negative, "a finite number >= 0");
  c.min_lr = flags.real("min-lr");
  MS_CHECK(std::isfinite(c.min_lr) && c.min_lr >= 0 && c.min_lr <= c.lr,
           "--min-lr must be in [0, --lr] = [0, ", flags.str("lr"), "], got ", flags.str("min-lr"));
  c.warmup = check.integer("warmup", 0, c.steps, str_cat("in [0, --steps] = [0, ", c.steps, "]"));
  c.momentum = check.real("momentum", unit, "in [0, 1)");
  c.beta1 = check.real("beta1", unit, "in [0, 1)");
  c.beta2 = check.real("beta2", unit, "in [0, 1)");
  c.weight_decay = check.real("weight-decay", non_negative, "a finite number >= 0");
  c.grad_clip = check.real("grad-clip", non_negative, "a finite number >= 0 (0 = off)");
  c.dropout = check.real("dropout", unit, "in [0, 1)");
  c.attn_dropout = check.real("attn-dropout", unit, "in [0, 1)");
  // Refused here, before any collective, not at the first attention (where
  // one pipeline stage alone would fail): docs/architecture.md "Devices".
  MS_CHECK(c.attn_dropout == 0 || c.device == Device::CPU, "--attn-dropout ",
           flags.str("attn-dropout"), " with --device ", device_name(c.device),
           " is not supported yet (the CUDA attention kernels take no dropout mask, and sim "
           "refuses what a GPU could not run): use --device cpu or --attn-dropout 0");
  c.seed = flags.integer("seed");
  c.eval_every = check.integer("eval-every", 0, kMax, ">= 0 (0 = never)");
  c.eval_batches =
      check.integer("eval-batches", 1, kMax, "at least 1 (to skip validation use --eval-every 0)");
  c.sample_every = check.integer("sample-every", 0, kMax, ">= 0 (0 = never)");
  c.sample_tokens = check.integer("sample-tokens", 0, kMax, ">= 0");
  c.log_every = check.integer("log-every", 1, kMax, "positive");

  c.model.n_layer = flags.integer("n-layer");
  c.model.n_head = flags.integer("n-head");
  c.model.n_embd = flags.integer("n-embd");
  c.model.block_size = c.T;
  c.model.dropout = c.dropout;
  c.model.attn_dropout = c.attn_dropout;
  MS_CHECK(c.model.n_head > 0 && c.model.n_embd > 0, "--n-embd ", c.model.n_embd, " and --n-head ",
           c.model.n_head, " must be positive");
  // With --init-from the width comes from the file; the loader checks that
  // --n-head divides it (nn/gpt_io.cpp).
  MS_CHECK(flags.given("init-from") || c.model.n_embd % c.model.n_head == 0, "--n-embd ",
           c.model.n_embd, " must be a positive multiple of --n-head ", c.model.n_head);
  MS_CHECK(c.model.n_layer > 0, "--n-layer must be positive, got ", c.model.n_layer);
  MS_CHECK(flags.given("init-from") || c.model.n_layer >= c.pp * c.virtual_stages, "--n-layer ",
           c.model.n_layer, " is fewer than the ", c.pp * c.virtual_stages,
           " pipeline stages (--pp ", c.pp, " × --virtual-stages ", c.virtual_stages,
           "): every stage needs at least one block");
  // With --init-from the heads come from the file (checked in cli/train.cpp).
  MS_CHECK(flags.given("init-from") || c.model.n_head % c.tp == 0, "--n-head ", c.model.n_head,
           " is not divisible by --tp ", c.tp,
           " (each tensor-parallel rank computes n_head / tp whole heads)");
  if (c.cp > 1) {
    // Refused, not built: the activations between stages would be (B, T / cp, C).
    MS_CHECK(c.pp == 1, "--cp ", c.cp, " with --pp ", c.pp,
             " is not supported (context parallelism with pipeline stages is not built: use "
             "--pp 1)");
    MS_CHECK(!c.sequence_parallel, "--cp ", c.cp,
             " with --sequence-parallel is not supported yet (both shard the sequence; Megatron "
             "combines them, minispeed does not yet): drop one");
    MS_CHECK(c.precision.dtype == DType::F32, "--cp ", c.cp,
             " with --bf16/--fp16 is not supported yet (the cp attention runs in f32)");
    MS_CHECK(c.device == Device::CPU, "--cp ", c.cp, " with --device ", device_name(c.device),
             " is not supported yet (parallel/cp's attention kernels have no device switch: "
             "use --device cpu)");
    MS_CHECK(c.cp_algo != "ulysses" || flags.given("init-from") || c.model.n_head > 1,
             "--cp ", c.cp, " --cp-algo ulysses with --n-head 1: one head cannot be split over "
             "the cp ranks (after the all-to-all each rank runs n_head / (tp·cp) whole heads); "
             "use --cp-algo ring or zigzag, which split the sequence instead");
    const int64_t pieces = c.cp_algo == "zigzag" ? 2 * c.cp : c.cp;
    MS_CHECK(c.T % pieces == 0, "--cp-algo ", c.cp_algo, " splits --seq-len ", c.T, " into ",
             pieces, c.cp_algo == "zigzag" ? " chunks (2 × --cp: rank r holds chunks r and 2·cp−1−r)"
                                           : " chunks (--cp)",
             ", which does not divide it (", c.T, " % ", pieces, " = ", c.T % pieces,
             "); no padding is added");
    MS_CHECK(c.cp_algo != "ulysses" || flags.given("init-from") ||
                 c.model.n_head % (c.tp * c.cp) == 0,
             "--cp-algo ulysses: --n-head ", c.model.n_head, " is not divisible by --tp ", c.tp,
             " × --cp ", c.cp, " = ", c.tp * c.cp,
             " (after the all-to-all each rank runs whole sequences of n_head / (tp·cp) heads)");
  }
  MS_CHECK(!c.sequence_parallel || c.T % c.tp == 0, "--sequence-parallel splits --seq-len ", c.T,
           " over --tp ", c.tp, ", which does not divide it (", c.T, " % ", c.tp, " = ", c.T % c.tp,
           ")");

  read_moe_flags(flags, c);  // cli/train_moe.h

  // Every size the run will compute with, in int64 (the data windows, the
  // largest activations, the parameter count).
  // D: the data-parallel replicas, the ranks that read different batches.
  const Factor B{"--batch-size", c.B}, T{"--seq-len", c.T}, G{"--grad-accum", c.accum},
      D{"ranks", c.dp};
  int64_t bt = checked_product({B, T}, "tokens per micro-step per rank");
  MS_CHECK(bt < kMax, "--batch-size × --seq-len = ", bt, " leaves no room for the target byte");
  c.tokens_per_step = checked_product({B, T, G, D}, "tokens per optimizer step");
  int64_t windows = checked_product({{"--steps", c.steps}, G, D}, "training windows read");
  MS_CHECK(windows <= kMax - c.dp, "--steps ", c.steps, " is too large: the training window ",
           "index overflows a 64-bit integer");
  checked_product({{"--eval-batches", c.eval_batches}, D}, "validation windows per evaluation");
  checked_product({{"tokens per micro-step", bt},
                   {"--n-embd", c.model.n_embd},
                   {"4 × 4 bytes (the MLP's 4C, fp32)", 16}},
                  "bytes of the MLP activation (B, T, 4C)");
  checked_product({B, {"--n-head", c.model.n_head}, T, T, {"4 bytes", 4}},
                  "bytes of the attention scores (B, n_head, T, T)");
  if (c.init_from.empty()) gpt_parameter_count(c.model);
  return c;
}

int64_t gpt_parameter_count(const GPTConfig& m) {
  // wte (V, C) + wpe (P, C) + per block 12C² + 13C (qkv, proj, fc, fc_proj and
  // their biases, two LayerNorms) + ln_f 2C; the output layer reuses wte.
  const Factor C{"--n-embd", m.n_embd}, L{"--n-layer", m.n_layer};
  const std::string what = "parameters of the model";
  int64_t per_block = 0, total = 0;
  int64_t c2 = checked_product({C, C, {"12", 12}}, what);
  int64_t c1 = checked_product({C, {"13", 13}}, what);
  bool overflow = __builtin_add_overflow(c2, c1, &per_block);
  int64_t blocks = checked_product({L, {"(12·n_embd² + 13·n_embd per block)", per_block}}, what);
  int64_t emb =
      checked_product({{"vocab + positions + 2", m.vocab_size + m.block_size + 2}, C}, what);
  overflow = overflow || __builtin_add_overflow(blocks, emb, &total);
  overflow = overflow || __builtin_add_overflow(total, moe_extra_parameters(m), &total);
  MS_CHECK(!overflow, "--n-layer ", m.n_layer, " × --n-embd ", m.n_embd,
           ": the parameter count overflows a 64-bit integer; use a smaller model");
  return total;
}

}  // namespace ms
