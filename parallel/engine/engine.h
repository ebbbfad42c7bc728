// The engine: DeepSpeed's user-facing object (deepspeed.initialize, then
// engine(x) / engine.backward(loss) / engine.step(), or train_batch under a
// pipeline) in C++. One ds_config (parallel/engine/config.h) decides the
// parallel layout, the optimizer and its schedule; the engine cuts a serial
// GPT for it:
//   tensor_parallel.size > 1  TpGPT, this rank's Megatron shards (parallel/tp/tp_gpt.h)
//   sequence_parallel_size > 1  CpGPT, this rank's positions of every sequence
//                             (parallel/cp/cp_gpt.h), around the serial model or the TpGPT
//   pipeline.stages > 1       this rank's stage trains (parallel/engine/pipeline.h)
//   zero_optimization.stage   ZeroOptimizer over the data-parallel ranks × the cp ranks (parallel/zero/)
//
//   auto [engine, optimizer, scheduler] = ms::initialize(model, config, world);
//   for each micro-batch (x, y):
//     Tensor loss = engine.forward(x, y);
//     engine.backward(loss);   // scaled by 1/gradient_accumulation_steps
//     engine.step();           // the update only at the accumulation boundary
//
// DeepSpeed's accumulation contract (DeepSpeedEngine.is_gradient_accumulation_boundary):
// step() is called after EVERY micro-batch; it counts micro-steps and, on the
// last of each gradient_accumulation_steps, clips to gradient_clipping, runs
// the optimizer at the scheduler's lr, and steps the scheduler. backward() on
// a non-boundary micro-step accumulates without communicating (DDP's no_sync).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "nn/data.h"
#include "nn/gpt.h"
#include "parallel/comm/communicator.h"
#include "parallel/engine/checkpoint.h"
#include "parallel/engine/config.h"
#include "parallel/mesh.h"
#include "parallel/zero/mixed_precision.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

class TpGPT;
struct EpGroups;
class TrainPipeline;

// The learning-rate schedule (DeepSpeed's lr_scheduler), stepped once per
// optimizer update: get_lr() is the rate the next update uses.
class LRScheduler {
 public:
  using Fn = std::function<double(int64_t update)>;  // the lr of update k (0-based)
  LRScheduler(Fn fn, std::string name) : fn_(std::move(fn)), name_(std::move(name)) {}
  double get_lr() const { return fn_(updates_); }
  void step() { ++updates_; }
  // DeepSpeed's counter: -1 before the first step, 0 after it.
  int64_t last_batch_iteration() const { return updates_ - 1; }
  // For resuming (DeepSpeed's load_state_dict): the updates already taken.
  void set_last_batch_iteration(int64_t it) { updates_ = it + 1; }
  const std::string& name() const { return name_; }

 private:
  Fn fn_;
  std::string name_;
  int64_t updates_ = 0;
};

// What deepspeed.initialize takes beside the config.
struct InitOptions {
  // DeepSpeed's optimizer=: used when the config has no "optimizer" section
  // (called with the tensors this rank updates, as ZeroOptimizer hands them).
  ZeroOptimizer::OptimizerFactory optimizer;
  // DeepSpeed's lr_scheduler=: used when the config has no "scheduler"
  // section. Without either the lr is constant (the optimizer's).
  LRScheduler::Fn lr_scheduler;
  std::string lr_scheduler_name = "client schedule";
  // Called once with the model this rank trains, after the tensor-parallel
  // cut and before ZeRO lays it out (stage 3 then releases the blocks): the
  // moment to measure what a rank holds. Collective calls are allowed.
  std::function<void(GPT&)> before_partition;
  // Tokens per sequence of the micro-batches (the pipeline sends (B, T, C)
  // between stages); 0 = the model's block_size.
  int64_t seq_len = 0;
};

class Engine {
 public:
  // The loss of one micro-batch (i32 (B, T) inputs and targets), through the
  // tp cut when there is one; under cp this rank's positions' mean. Not under a pipeline: use train_batch there
  // (DeepSpeed's PipelineEngine refuses forward/backward/step the same way).
  Tensor forward(const Tensor& x, const Tensor& y);
  // loss / gradient_accumulation_steps, backward, with the data-parallel
  // reduction only on the boundary micro-step.
  void backward(const Tensor& loss);
  // After every micro-batch; the optimizer update on the boundary only.
  void step();
  // One whole optimizer step: gradient_accumulation_steps micro-batches from
  // next() (called that many times, in order), through the pipeline schedule
  // or forward/backward/step. Returns the global batch's mean loss, the same
  // on every rank (DeepSpeed's PipelineEngine.train_batch).
  double train_batch(const std::function<Batch()>& next);
  // train_batch in its two halves, for a caller that meters the step's
  // communication apart from the loss's: the step alone, returning this
  // rank's mean loss (under a pipeline the last stage's, 0 elsewhere); then,
  // collective, the global batch's mean from every rank's value.
  double train_batch_unreduced(const std::function<Batch()>& next);
  double reduce_loss(double local_loss);

  // True when the next step() updates: (micro_steps + 1) % gas == 0.
  bool is_gradient_accumulation_boundary() const;
  int64_t global_steps() const;  // optimizer updates taken
  int64_t micro_steps() const;   // step() calls
  int64_t gradient_accumulation_steps() const;
  int64_t train_micro_batch_size_per_gpu() const;
  double get_lr() const;          // the lr the next update uses
  double last_grad_norm() const;  // global norm before clipping, of the last update

  void train();  // dropout on (the default)
  void eval();   // dropout off; pair with NoGradGuard for evaluation

  Mesh& mesh();
  const DsConfig& config() const;
  GPT& gpt();                 // the model this rank trains (tp shard shapes under tp)
  Module& module();           // what forward runs: the CpGPT, the TpGPT or the GPT
  TpGPT* tp();                // null without tensor parallelism
  TrainPipeline* pipeline();  // null without pipeline parallelism
  ZeroOptimizer& zero_optimizer();  // the dense parameters' under expert parallelism
  ZeroOptimizer* expert_optimizer();  // this rank's experts' (null without ep)
  EpGroups* ep();                     // null without expert parallelism
  Optimizer& optimizer();
  LRScheduler& lr_scheduler();
  int64_t num_parameters() const;  // of the whole serial model, before any cut

  // Collective over the world: every stage's, tp shard's and ZeRO-3 shard's
  // parameters gathered into one serial GPT (to sample or save the weights).
  std::shared_ptr<GPT> gather_model();
  // Collective over the world: the weights to save, by Hugging Face name, in
  // fp32 — in a 16-bit run the optimizer's fp32 masters (gathered from the dp
  // ranks' slices), not the model's rounded copies, as DeepSpeed's
  // zero_to_fp32.py and `minispeed consolidate` give them. `whole` is what
  // gather_model() returned (gathering it again would repeat ZeRO-3's and
  // the pipeline's whole-model collectives).
  std::map<std::string, Tensor> fp32_weights(const GPT& whole);

  // For resuming from a checkpoint: `steps` updates already taken (the
  // micro-step count follows, at a boundary). The scheduler is restored on
  // its own (LRScheduler::set_last_batch_iteration).
  void set_global_steps(int64_t steps);

  // DeepSpeed's checkpoint API (parallel/engine/checkpoint.h), collective
  // over the world. save: every rank writes its shard to dir/tag (tag ""
  // = DeepSpeed's "global_step<N>"), then dir/latest; `client_state` is kept
  // in each rank's JSON for the record. Returns dir/tag. load: `tag` is a tag
  // or "latest"; any saved (dp, tp, pp, ZeRO stage) layout loads into this
  // one; the step counters, the LR schedule's position, the dropout streams
  // and the loss scale continue where the save left them.
  std::string save_checkpoint(const std::string& dir, const std::string& tag = "",
                              const std::map<std::string, std::string>& client_state = {});
  CheckpointMeta load_checkpoint(const std::string& dir, const std::string& tag = "latest");

  struct State;
  explicit Engine(std::shared_ptr<State> s) : s_(std::move(s)) {}

 private:
  std::shared_ptr<State> s_;  // a handle, like DeepSpeed's engine object: copies share it
};

struct Initialized {
  Engine engine;
  Optimizer& optimizer;
  LRScheduler& lr_scheduler;
};

// Collective over `world` (the mesh's splits, ZeroOptimizer's broadcast of
// rank 0's parameters). `model` is the whole serial GPT, the same on every
// rank (built from the same seed or file); under tensor parallelism it is cut
// in place and must not be used as a serial model afterwards. `config`'s
// layout must match world: tensor_parallel.size × pipeline.stages ×
// dp_world_size ranks (load_ds_config_for_ranks resolves it so).
Initialized initialize(std::shared_ptr<GPT> model, const DsConfig& config, Communicator world,
                       InitOptions options = {});

// The ds_config sections the engine does not run yet (fp16, bf16,
// activation_checkpointing) as an ms::Error naming the key; nothing otherwise.
void check_engine_supports(const DsConfig& config);
// moe.ep_size against the model and the layout (E % ep, ep | dp, no tp/pp,
// ZeRO 0-2, fp32): an ms::Error naming the key, the same on every rank.
void check_expert_parallel(const DsConfig& config, const GPTConfig& model);

// The "fp16" / "bf16" sections and communication_data_type as ZeroOptimizer's
// mixed precision (parallel/zero/mixed_precision.h); F32 when neither is enabled.
MixedPrecision mixed_precision(const DsConfig& config);

}  // namespace ms
