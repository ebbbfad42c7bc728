// ZeroOptimizer: data-parallel training of a GPT with ZeRO stage 0-3
// (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models", SC 2020). It owns the optimizer, because which tensors
// the optimizer sees IS the difference between the stages.
//
//   stage  partitioned across the D dp ranks          memory/rank (fp32 AdamW)   comm/step
//   0      nothing (DDP, ../dp/data_parallel.h)       16Ψ                        2Ψ
//   1      optimizer state       (stage1.h)           8Ψ + 8Ψ/D                  2Ψ
//   2      + gradients           (stage2.h)           4Ψ + 12Ψ/D                 2Ψ
//   3      + parameters          (stage3.h)           16Ψ/D                      3Ψ
//
// Usage (every rank of `dp`; rank r reads its own 1/D of the global batch):
//   ZeroOptimizer engine(model, mesh.dp(), {.stage = 2}, [](std::vector<Tensor> ps) {
//     return std::make_unique<AdamW>(std::move(ps), 3e-4);
//   });
//   for each step:
//     for m in 0..accum-1:
//       engine.set_gradient_sync(m == accum - 1);
//       Tensor loss = mul(model.loss(x, y), 1.0 / accum);
//       loss.backward();
//     double grad_norm = engine.step(lr, /*max_norm=*/1.0);
//
// Equivalence (what tests/mpi/test_zero.cpp checks): D ranks with micro-batch
// B train exactly like one process with micro-batch D·B, up to float rounding.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/communicator.h"
#include "parallel/comm/ledger.h"
#include "parallel/zero/memory.h"
#include "parallel/zero/mixed_precision.h"

namespace ms {

class ZeroStage;

// Tensor parallelism around the dp group (parallel/tp/tp_gpt.h): the model
// holds this rank's tp shards, and the parameters marked `replicated`
// (LayerNorms, row-parallel biases, wpe) are whole copies on every tp rank.
// ZeroOptimizer then, after its dp reduction (Megatron's finalize_model_grads
// order: the dp sum, then the tp sum; they commute):
//   - with sum_replicated_grads (sequence parallelism, parallel/tp/
//     sequence_parallel.h), sums the replicated gradients over tp in ONE
//     all-reduce of the elements this rank owns (all of them at stage 0, its
//     slice's share at stages 1-3: the tp ranks of a dp rank have identical
//     flat layouts, so the same elements);
//   - takes the global norm with every parameter counted once
//     (parallel/tp/grad_norm.h's rule): sharded ones summed over tp,
//     replicated ones counted on tp rank 0 only.
struct ZeroTensorParallel {
  Communicator tp;
  std::vector<bool> replicated;  // per model.parameters() index
  bool sum_replicated_grads = false;
};

// Pipeline parallelism (parallel/pp/pipeline_engine.h): every rank holds the
// whole GPT object but trains only its stage's parameters, and the global
// gradient norm sums the stages' squares over pp. The last stage's copy of
// the tied wte is trained like the first stage's (their gradients were summed
// by ReduceTiedGrads, so both copies take the same step) but counted once in
// the norm (DeepSpeed's ds_pipe_replicated, Megatron's param_is_not_shared).
// Only stages 0 and 1: ZeRO-2/3 reduce gradients on every micro-batch, and a
// pipeline runs m of them per step (DeepSpeed's PipelineEngine refuses them).
struct ZeroPipeline {
  Communicator pp;
  std::vector<bool> owned;      // per model.parameters() index: this stage trains it
  std::vector<bool> tied_copy;  // per index: a copy another stage also trains (norm: skipped)
};

struct ZeroOptions {
  int stage = 0;                         // 0 = plain DDP, 1, 2, 3
  size_t bucket_bytes = 25u << 20;       // DDP's and stage 2's gradient bucket size
  std::optional<ZeroTensorParallel> tp;  // unset: no tensor parallelism
  std::optional<ZeroPipeline> pp;        // unset: no pipeline parallelism
  MixedPrecision precision;              // default: fp32 throughout (mixed_precision.h)
  // ZeRO-Offload (DeepSpeed's offload_optimizer.device "cpu"; Ren et al.
  // 2021): the fp32 masters, their gradients and the optimizer state live on
  // the CPU and the optimizer steps there; the reduced gradients come down
  // and the updated parameters go up each step (MasterWeights, mixed_precision.h).
  bool offload_optimizer = false;
  // Expert parallelism (parallel/ep/ep_optimizer.h): train only the marked
  // parameters (per model.parameters() index) over this communicator — the
  // dense ones over dp, this rank's experts over the expert-data-parallel
  // group, DeepSpeed's expert / non-expert parameter groups. Empty: all.
  // Stages 0-2, fp32, without tp or pp.
  std::vector<bool> subset;
  // Which mesh axis `dp` is, for the gradients' placements
  // (parallel/dp/grad_placement.h): DP (dp×cp when cp > 1), or ExpertDP for
  // the optimizer of an expert-parallel run's experts.
  MeshAxis axis = MeshAxis::DP;
};

class ZeroOptimizer {
 public:
  using OptimizerFactory = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;
  // Collective over `dp`. Broadcasts rank 0's parameters, lays them out for
  // the stage, and calls make_optimizer with the tensors this rank updates:
  // all parameters for stage 0; this rank's slice of each flat
  // group: one tensor for stage 1, one per bucket/block for stages 2 and 3).
  ZeroOptimizer(GPT& model, Communicator dp, ZeroOptions opts, OptimizerFactory make_optimizer);
  ~ZeroOptimizer();
  ZeroOptimizer(const ZeroOptimizer&) = delete;
  ZeroOptimizer& operator=(const ZeroOptimizer&) = delete;

  // Before each micro-step's backward. false skips communication (gradient
  // accumulation) in stages 0 and 1; stages 2 and 3 reduce-scatter on every
  // micro-step regardless (see stage2.h).
  void set_gradient_sync(bool sync);
  // The dp reduction alone (DeepSpeed's ReduceGrads), for a caller that must
  // run something between it and the step; step() then skips it. A pipeline
  // sums the tied embedding's gradients BEFORE this (Megatron#844: after a
  // ZeRO reduce-scatter the first and last stage hold different shards).
  void reduce_gradients();
  // After the last micro-step's backward: finish gradient communication, clip
  // to the global norm (max_norm 0 = off), optimizer step at `lr`, zero the
  // gradients, restore full parameters where the stage keeps them. Collective.
  // Returns the global gradient norm before clipping (unscaled under fp16).
  // Mixed precision (opts.precision): the step is SKIPPED when any rank's
  // gradients hold an inf/NaN (all ranks agree: dp, tp and pp groups) —
  // parameters, masters and optimizer state untouched, gradients zeroed, the
  // fp16 loss scaler updated — and step() returns NaN; skipped() says so, and
  // the caller must not advance its LR schedule (DeepSpeed's engine steps its
  // lr_scheduler only when not optimizer.overflow). Under fp16, at
  // min_loss_scale, DeepSpeed's "Current loss scale already at minimum" error.
  double step(double lr, double max_norm);
  // step() in two halves for an optimizer that shares its clipping norm with
  // another (expert parallelism, parallel/ep/ep_optimizer.h; fp32 only):
  // finish the reduction, multiply the gradients by `grad_scale`, and return
  // this group's Σ g² (summed over the group when the gradients are sharded);
  // then clip to the caller's global `norm` and update.
  double reduce_and_sq_norm(double grad_scale);
  void finish_step(double lr, double max_norm, double norm);

  // ---- mixed precision (mixed_precision.h) ----
  // Multiply the loss by this before backward (fp16's current loss scale; 1
  // otherwise). scale_loss(loss) does it, returning `loss` itself at scale 1.
  double loss_scale() const { return scaler_ ? scaler_->loss_scale() : 1.0; }
  Tensor scale_loss(const Tensor& loss) const;
  bool skipped() const { return skipped_; }  // the last step() was skipped
  // Why, for the log: DeepSpeed's "OVERFLOW! Skipping step. Attempted loss
  // scale: X, reducing to Y" (fp16) or the bf16 equivalent; "" after a step.
  std::string skip_message() const;
  int64_t skipped_steps() const { return skipped_steps_; }
  // For a checkpoint resume: the LR schedule reads step - skipped_steps().
  void set_skipped_steps(int64_t n) {
    MS_CHECK(n >= 0, "zero: skipped_steps ", n, " must be >= 0");
    skipped_steps_ = n;
  }
  // The fp16 scaler (null otherwise): its state() / load_state() for checkpoints.
  LossScaler* loss_scaler() { return scaler_.get(); }
  const MixedPrecision& precision() const { return opts_.precision; }
  // ZeRO-Offload: on, and the bytes its masters moved between the device and
  // the CPU so far (MasterWeights::transfer_bytes; zeros when off or when the
  // model is on the CPU too).
  bool offloaded() const { return opts_.offload_optimizer; }
  MasterWeights::Transfers offload_transfers() const {
    return masters_ ? masters_->transfer_bytes() : MasterWeights::Transfers{};
  }
  // After the optimizer's tensors (the fp32 masters) were overwritten, e.g. by
  // a checkpoint load: round them into the model's 16-bit parameters and
  // bring every rank's full parameters up to date. Collective; no-op in fp32,
  // where the optimizer's tensors are the parameters themselves.
  void refresh_model_from_optimizer();

  // This rank's bytes: params, grads, optimizer state, buffers, peak, and the
  // paper's prediction for this stage, D and Ψ. Not collective (gather the
  // reports with gather_memory_reports, print with format_memory_table).
  MemoryReport memory() const;

  // Stage 3: collective; every parameter is gathered and stays so until the
  // next step() (call it before saving or inspecting the model). No-op otherwise.
  void gather_full_parameters();

  // What one training step of G micro-steps should send, per the stage's
  // formula (parallel/comm/ledger.h), with the inputs read off this stage's
  // layout: Ψp = the padded flat groups' sizes (flat_params.h); R = the padded
  // groups stage 3 keeps gathered between steps (wte, wpe, ln_f).
  StepFormula traffic_formula(int64_t micro_steps);

  // With tensor parallelism: the gradient elements sum_replicated_grads
  // all-reduces over tp each step (0 without it).
  int64_t replicated_grad_numel() const;

  // Where this rank's optimizer tensors hold each model parameter's elements,
  // for checkpoints (parallel/engine/checkpoint.h): optimizer tensor `tensor`
  // elements [tensor_begin, +numel) are parameter `param`'s (an index into
  // model.parameters()) flattened elements [param_begin, +numel). Stage 0:
  // every trained parameter whole; stages 1-3: the pieces of this rank's
  // slices (flat_params.h), at most one per parameter; padding is in none.
  struct Fragment {
    int tensor = 0, param = 0;
    int64_t param_begin = 0, tensor_begin = 0, numel = 0;
    Shape shape;  // the parameter's (kept while stage 3 has released it)
  };
  std::vector<Fragment> fragments() const;
  int dp_rank() const { return dp_.rank(); }

  int stage() const { return opts_.stage; }
  int64_t num_parameters() const { return num_params_; }  // Ψ (stage 3's released ones included)
  Optimizer& optimizer() { return *optimizer_; }
  ZeroStage& stage_impl() { return *stage_; }

 private:
  void sum_replicated_grads();
  double local_sq_norm();
  bool agreed_overflow();
  double model_parallel_sq_norm();
  int64_t checked_num_params(const GPT& model) const;
  std::vector<Tensor> stage_params(const GPT& model) const;
  bool trains(size_t i) const;  // parameter i is this optimizer's (pp owned, ep subset)
  template <typename T>
  std::vector<T> owned(const std::vector<T>& per_param) const;
  void lay_out_norm(const GPT& model);
  static const std::vector<bool>& checked_mask(const ZeroTensorParallel& tp, const GPT& model);

  GPT& model_;
  Communicator dp_;
  ZeroOptions opts_;
  int64_t num_params_ = 0;
  std::unique_ptr<ZeroStage> stage_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<MasterWeights> masters_;  // mixed precision only
  std::unique_ptr<LossScaler> scaler_;      // fp16 only
  bool skipped_ = false;
  int64_t skipped_steps_ = 0;
  size_t peak_ = 0;
  // Per trainable tensor: the [begin, end) element ranges of replicated
  // parameters in it (ZeroTensorParallel).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> replicated_ranges_;
  // Per trainable tensor: the ranges this rank leaves out of the norm (tp's
  // replicated ones off tp rank 0, a pipeline's tied copy); empty: none.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> norm_skip_;
  bool reduced_ = false;  // reduce_gradients() ran since the last step
};

}  // namespace ms
