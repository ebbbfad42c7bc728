// ZeRO stage 2 (P_os+g): partition the gradients too.
//
// In stage 1 every rank still holds the full gradient (4Ψ) although its
// optimizer reads only 1/D of it. Stage 2 never keeps more than a bucket of
// full gradient: the flat parameters are split into buckets (each its own
// padded, D-way partitioned group), and as soon as a bucket's gradients are
// all final in backward — hooks and the bucket machine shared with DDP,
// ../dp/grad_buckets.h — the bucket is reduce-scattered (nonblocking) and the
// full gradients are freed. Rank r accumulates only the averaged slice r of
// each bucket, in its gradient slices (4Ψ/D).
// What stays the same as stage 1: optimizer over the slices, all-gather of the
// parameters after the step, and the communication volume, 2Ψ per step.
// Memory per rank: 4Ψ params + 4Ψ/D grads + KΨ/D optimizer state (+ buckets in flight).
//
// Gradient accumulation: ZeRO-2 reduce-scatters on EVERY micro-step (DeepSpeed
// does too): skipping communication would mean keeping full gradients across
// micro-steps, i.e. giving up exactly what stage 2 saves. So set_gradient_sync
// is ignored here; my gradient slices accumulate the averaged micro-step gradients.
#pragma once
#include "parallel/dp/grad_buckets.h"
#include "parallel/zero/stage.h"

namespace ms {

class ZeroStage2 : public ZeroShardedStage {
 public:
  // Collective over `dp`: buckets of ~bucket_bytes, in reverse parameter order.
  ZeroStage2(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes,
             std::optional<DType> grad_dtype = std::nullopt);

  void set_gradient_sync(bool) override;
  void reduce_gradients() override;
  void after_step() override;
  void count_memory(MemoryCounter& counter) const override;
  size_t layout_bytes(size_t optimizer_bytes_per_param) const override;

 protected:
  // For stage 3, which chooses its own groups (one per transformer block).
  ZeroStage2(std::vector<Tensor> params, Communicator dp,
             const std::vector<std::vector<int>>& groups, std::optional<DType> grad_dtype);
  void on_grad_ready(int param) override;

 private:
  Work launch(int g);     // pack group g's gradients, free them, reduce-scatter
  void complete(int g);   // add my averaged slice into my gradient slice
  void finish_pending();  // launch what is left, complete everything in flight

  Tensor grad_slices_flat_;  // my slice of every group's gradient, back to back
  // Per group, while its reduce-scatter is in flight: the group's full
  // gradients, flat, and my averaged slice of them (both freed on completion).
  std::vector<Tensor> sending_, receiving_;
  // DDP's bucket machine (../dp/grad_buckets.h), one bucket per group.
  GradBuckets buckets_;
};

}  // namespace ms
