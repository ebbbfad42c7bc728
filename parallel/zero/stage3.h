// ZeRO stage 3 (P_os+g+p): partition the parameters too.
//
// After stage 2 every rank still holds all 4Ψ bytes of parameters, although it
// updates only 1/D of them and uses any one layer only while that layer
// computes. Stage 3 keeps just its slice (4Ψ/D) and rebuilds a layer when it
// is needed: each transformer block is one flat group, and
//   forward:  all-gather block i's parameters, run it, free them; while block
//             i runs, block i+1's all-gather is already in flight (prefetch);
//   backward: all-gather block i again (prefetching block i-1), recompute its
//             forward with autograd on, backpropagate through it — its
//             gradients go out as in stage 2, reduce-scattered as a bucket —
//             and free the parameters again.
// Communication per step: all-gather Ψ (forward) + all-gather Ψ (backward) +
// reduce-scatter Ψ = 3Ψ, 1.5x DDP — the price of 16Ψ/D memory.
//
// Recomputation: each block runs through ms::checkpoint (autograd/checkpoint.h)
// — under NoGradGuard, so the autograd graph holds no reference to the
// gathered parameters (our ops save detached views of their inputs, which
// would otherwise keep the freed memory alive); backward gathers again and
// recomputes the block from its saved input. That is activation checkpointing
// at block granularity, which DeepSpeed users pair with ZeRO-3 anyway (only
// block inputs are kept). The checkpoint replays the block's dropout streams,
// but dropout is still refused: no test yet compares a ZeRO-3 run with
// dropout against DDP with dropout.

// minispeed keeps the parameters outside the blocks (wte, wpe, ln_f: one more
// group) gathered through the whole step, as if it were stage 2 for them.
// DeepSpeed releases those too; for GPT-2 the tied embedding is large, so the
// memory table shows it as the one visible extra over 16Ψ/D.
//
// How it hooks in: from outside the model. Each block is replaced
// (GPT::replace_block) by a layer that gathers, runs and releases it, the way
// FSDP wraps submodules; the model itself knows nothing of ZeRO.
//
// Between steps a released parameter is EMPTY (numel 0, as DeepSpeed's
// param.data); ZeroOptimizer::gather_full_parameters() brings all of them back
// (for saving or inspection) until the next step. Because a gather is a
// collective, every forward over released blocks (training, evaluation) must
// run on all dp ranks together; one rank alone (sampling) must gather first —
// generate() says so with an error instead of entering a lone all-gather.
#pragma once
#include <memory>
#include <vector>

#include "nn/gpt.h"
#include "parallel/zero/stage2.h"

namespace ms {

class ZeroStage3 : public ZeroStage2 {
 public:
  // Collective over `dp`. Wraps each of the model's blocks (GPT::replace_block)
  // in a layer that runs it the ZeRO-3 way; the destructor puts the blocks
  // back. The model must outlive us.
  ZeroStage3(GPT& model, Communicator dp, std::optional<DType> grad_dtype = std::nullopt);
  ~ZeroStage3() override;

  void reduce_gradients() override;
  void after_step() override;
  void gather_full_parameters() override;
  size_t layout_bytes(size_t optimizer_bytes_per_param) const override;
  size_t released_alive() const override;

 private:
  class GatheredBlock;  // the layer that stands in for block b (stage3.cpp)
  Tensor run_block(int b, const Tensor& x);
  void prefetch(int g);  // start gathering group g's parameters
  void gather(int g);    // make sure they are gathered and bound
  void release(int g);   // free them

  GPT& model_;
  std::vector<std::shared_ptr<Layer>> blocks_;  // the model's own blocks, put back at the end
  // What run_block runs: blocks_, or what a CheckpointedBlock wraps — our
  // recompute already is one, and a second would add a third forward.
  std::vector<std::shared_ptr<Layer>> run_;
  // My slices of every group, back to back: my ONLY copy of the block parameters.
  Tensor param_slices_flat_;
  std::vector<Work> gathering_;                        // per group: an all-gather in flight
  std::vector<std::weak_ptr<Storage>> last_released_;  // per group: to check it was really freed
  int rest_group_ = 0;                                 // wte, wpe, ln_f: kept gathered
  bool pinned_ = false;  // gather_full_parameters() until the next step
};

}  // namespace ms
