// ZeRO stage 3 (P_os+g+p): partition the parameters too.
//
// After stage 2 every rank still holds all 4Ψ bytes of parameters, although it
// updates only 1/D of them and uses any one layer only while that layer
// computes. Stage 3 keeps just its slice (4Ψ/D) and rebuilds a layer when it
// is needed: each transformer block is one flat group, and
//   forward:  all-gather block i's parameters, run it, free them; while block
//             i runs, block i+1's all-gather is already in flight (prefetch);
//   backward: before block i's backward ops run, all-gather block i again
//             (prefetching block i-1) INTO THE SAME STORAGE the forward's
//             autograd graph saved views of; once the block's last parameter
//             gradient is final its gradients go out as in stage 2,
//             reduce-scattered as a bucket, and the parameters are freed.
// Communication per step: all-gather Ψ (forward) + all-gather Ψ (backward) +
// reduce-scatter Ψ = 3Ψ, 1.5x DDP — the price of 16Ψ/D memory.
// What the prefetch buys depends on the backend: it only ISSUES the next
// block's gather one block early. NCCL would run it on its own stream during
// the block's compute; Open MPI on CPU (no progress thread) moves most of the
// bytes inside the later wait, so there the ranks still wait for it.
//
// No recompute: the activations the block's ops saved stay, exactly as
// without ZeRO; only the parameter bytes come and go. This is how DeepSpeed
// does it (runtime/zero/parameter_offload.py applies an autograd Function to
// each module's outputs whose backward fetches the module's parameters,
// partitioned_param_coordinator.py's fetch_sub_module / release_sub_module)
// and PyTorch FSDP too (_pre_backward_hook; _free_storage / _alloc_storage on
// the flat parameter). Here:
//   - release frees the gathered buffer's BYTES but keeps its Storage object
//     (Storage::release_data), so the graph's saved weight views stay valid
//     objects of zero bytes — the memory is really back;
//   - a node inserted at the block's output (identity forward) runs, in
//     backward, before any of the block's own nodes (they all lie behind
//     it), and refills that Storage (Storage::restore_data + all-gather);
//     the saved views read the re-gathered values in place;
//   - the gradient hooks count the block's parameters; the last one frees
//     the block again (every node that reads a weight also sends that
//     weight its gradient, so none runs after it). DeepSpeed frees from a
//     Function on the module's inputs instead, FSDP from a post-backward
//     hook on the flat parameter's gradient accumulator — ours is FSDP's way.
// Dropout needs nothing special: the forward's masks are saved in the graph,
// as in DDP. Under --checkpoint-activations a block's own checkpoint runs
// inside this wrapper: the re-gather precedes its recompute, so a checkpointed
// block runs twice per step, a plain block once.

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

  void set_gradient_sync(bool sync) override;
  void reduce_gradients() override;
  void after_step() override;
  void gather_full_parameters() override;
  size_t layout_bytes(size_t optimizer_bytes_per_param) const override;
  size_t released_alive() const override;

 private:
  class GatheredBlock;  // the layer that stands in for block b (stage3.cpp)
  Tensor run_block(int b, const Tensor& x);
  // Start gathering group g's parameters into `buffer` (a new one when
  // undefined; else the released buffer a forward's graph still views).
  void prefetch(int g, const Tensor& buffer = Tensor());
  void gather(int g, const Tensor& buffer = Tensor());  // ... and wait, and bind
  void release(int g);                                  // free them
  void on_grad_ready(int param) override;

  GPT& model_;
  std::vector<std::shared_ptr<Layer>> blocks_;  // the model's own blocks, put back at the end
  // My slices of every group, back to back: my ONLY copy of the block parameters.
  Tensor param_slices_flat_;
  std::vector<Work> gathering_;                        // per group: an all-gather in flight
  std::vector<std::weak_ptr<Storage>> last_released_;  // per group: to check it was really freed
  // Per block group: the buffer the last forward's graph saved views of, for
  // the backward's prefetch (zero bytes while released).
  std::vector<Tensor> backward_buffer_;
  std::vector<int> grads_arrived_;  // per group, this backward: its parameters' hooks so far
  int rest_group_ = 0;                                 // wte, wpe, ln_f: kept gathered
  bool pinned_ = false;  // gather_full_parameters() until the next step
};

}  // namespace ms
