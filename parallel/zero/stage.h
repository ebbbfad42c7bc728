// The pieces ZeroOptimizer (zero_optimizer.h) is built from: one interface every stage
// implements, and the machinery ZeRO stages 1, 2 and 3 share.
//
// Read the stages in order; each file shows only what its stage adds:
//   ../dp/data_parallel.cpp  stage 0: full replicas, gradients all-reduced in buckets
//                            (../dp/grad_buckets.h: the bucket machine stage 2 reuses)
//   stage1.cpp               P_os: optimizer state partitioned (this file's base class)
//   stage2.cpp               P_os+g: gradients reduce-scattered during backward, full ones freed
//   stage3.cpp               P_os+g+p: parameters gathered per block only while needed
#pragma once
#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/zero/flat_params.h"
#include "parallel/zero/memory.h"
#include "tensor/placement.h"

namespace ms {

// What the engine asks of a stage, once per training step:
//   [set_gradient_sync, forward, backward] × micro-steps, reduce_gradients,
//   (engine: norm, clip, optimizer step over trainable()), after_step.
class ZeroStage {
 public:
  virtual ~ZeroStage() = default;
  // The tensors this rank's optimizer updates, each with its .grad.
  virtual std::vector<Tensor> trainable() = 0;
  // Called before each micro-step's backward; false = accumulate without communicating.
  virtual void set_gradient_sync(bool sync) = 0;
  // Which mesh axis the stage's communicator is, for the gradients'
  // placements (parallel/dp/grad_placement.h): DP, or ExpertDP for experts.
  virtual void set_axis(MeshAxis axis) = 0;
  // After the last backward: finish all gradient communication, so that every
  // trainable tensor's .grad holds the gradient averaged over the dp ranks.
  virtual void reduce_gradients() = 0;
  // True when each rank holds a different part of the gradient, so the global
  // norm needs a sum over ranks.
  virtual bool sharded_gradients() const = 0;
  // After the optimizer step: clear the gradients, bring parameters up to date.
  virtual void after_step() = 0;
  // Stage 3 only: gather every parameter and keep it until the next step.
  virtual void gather_full_parameters() {}
  // Adds the tensors this stage holds to the counter.
  virtual void count_memory(MemoryCounter& counter) const = 0;
  // The params + grads + optimizer bytes this stage holds by design between
  // steps, from its layout (padded sizes): the paper's formula, made exact.
  virtual size_t layout_bytes(size_t optimizer_bytes_per_param) const = 0;
  // For each trainable() tensor, the [begin, end) element ranges that hold
  // parameters marked in `which` (indexed like the params the stage was
  // given): where a tp-replicated parameter's gradient lies in this rank's
  // slices. The default is for stages whose trainable() are the parameters
  // themselves, whole and in order (DDP).
  using Ranges = std::vector<std::pair<int64_t, int64_t>>;
  virtual std::vector<Ranges> ranges_of(const std::vector<bool>& which);
  // Stage 3: bytes of released parameters something still holds (must be 0).
  virtual size_t released_alive() const { return 0; }
  // Highest params+grads+buffers seen at the stage's checkpoints (the engine
  // adds the optimizer state).
  size_t peak_bytes() const { return peak_; }

 protected:
  void note_memory() {
    MemoryCounter c;
    count_memory(c);
    if (c.total() > peak_) peak_ = c.total();
  }

 private:
  size_t peak_ = 0;
};

// Shared by stages 1-3: the model's parameters packed into flat groups
// (flat_params.h), rank 0's values broadcast to all, every parameter a view
// into its group's full buffer, and this rank's slice of each group — the only
// part its optimizer ever sees. That last sentence is all of stage 1's memory
// saving: optimizer state exists only for the slice, KΨ/D instead of KΨ.
class ZeroShardedStage : public ZeroStage {
 public:
  ~ZeroShardedStage() override;
  std::vector<Tensor> trainable() override { return param_slices_; }
  bool sharded_gradients() const override { return true; }
  void set_axis(MeshAxis axis) override;
  std::vector<Ranges> ranges_of(const std::vector<bool>& which) override;
  void count_memory(MemoryCounter& counter) const override;
  const FlatParams& layout() const { return layout_; }

 protected:
  // Collective over `dp`.
  // grad_dtype: the gradient buffers' dtype, which is what the reductions move
  // (mixed precision: f32 or 16-bit, mixed_precision.h); unset = the parameters'.
  ZeroShardedStage(std::vector<Tensor> params, Communicator dp,
                   const std::vector<std::vector<int>>& groups,
                   std::optional<DType> grad_dtype = std::nullopt);
  // Runs in backward when parameter `param`'s gradient is final.
  virtual void on_grad_ready(int param) = 0;
  // After the optimizer updated our slices: every rank's full buffers get
  // every rank's slice. Groups whose full buffer is not held (stage 3's
  // released blocks) are skipped: they are gathered when next needed.
  void all_gather_params();
  // What a reduce-scatter leaves in my gradient partition of group g: the
  // average of my slice over dp, so sharded(0) over it (the full-size
  // per-parameter gradients, where a stage keeps them, are not replicated:
  // only my slice of them was averaged). Other groups' debts entering the
  // bucket (`entering`) are carried over (grad_placement.h).
  void mark_partition_reduced(int g, const std::vector<Tensor>& entering);
  std::string partition_label(int g) const;

  MeshAxis axis_ = MeshAxis::DP;
  FlatParams layout_;
  Communicator dp_;
  DType grad_dtype_;
  // Per group: its full flat parameter buffer (padded; the model's parameters
  // view it). Stage 3 leaves it undefined while the group is released.
  std::vector<Tensor> full_params_;
  // Per group: my slice of full_params_[g] — the tensors my optimizer updates;
  // each one's .grad is my slice of that group's averaged gradient.
  std::vector<Tensor> param_slices_;

 private:
  std::shared_ptr<ZeroShardedStage*> self_;  // the gradient hooks reach us through this
};

}  // namespace ms
