// A GPT block under activation checkpointing (autograd/checkpoint.h): a Layer
// that holds the block as an unnamed child (parameter names stay "h.i....")
// and runs it through ms::checkpoint, replaying the block's dropout streams in
// the recompute. Installed from outside by GPT::replace_block, like ZeRO-3's
// gathering wrapper; Megatron's equivalent is
// TransformerBlock._checkpointed_forward with recompute_granularity='full',
// recompute_method='uniform', recompute_num_layers=1.
#pragma once
#include <memory>
#include <vector>

#include "nn/gpt.h"

namespace ms {

// Every Dropout's generator inside `m` (the module and its descendants), in
// registration order: the RNG streams a checkpoint of `m` must replay.
std::vector<Generator*> dropout_generators(Module& m);

class CheckpointedBlock : public Layer {
 public:
  // Any Layer (a Block, a TpBlock): its Dropouts are found through the module tree.
  explicit CheckpointedBlock(std::shared_ptr<Layer> block);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C), keeps only x
  const std::shared_ptr<Layer>& inner() const { return block_; }

 private:
  std::shared_ptr<Layer> block_;
  std::vector<Generator*> generators_;
};

// Wraps the model's first `count` blocks (all of them when count < 0) in a
// CheckpointedBlock and returns the layers now at blocks 0..count-1 were
// before, so a caller can put them back (GPT::replace_block). Megatron's
// recompute_method='block' with recompute_num_layers = count; DeepSpeed's
// activation_checkpointing.number_checkpoints is the same number (the
// checkpoints its contiguous buffer is sized for). A block that already is a
// CheckpointedBlock stays as it is: wrapping it again would recompute it twice
// in backward (a third forward) for no memory saved.
// Call it BEFORE ZeroOptimizer at stage 3: ZeRO-3's gathering layer then wraps
// the CheckpointedBlock (stage3.h); installed after, the recompute would run
// the gathering layer again, with a second gather and a wasted prefetch.
std::vector<std::shared_ptr<Layer>> checkpoint_blocks(GPT& model, int64_t count = -1);

// How many of the model's blocks are CheckpointedBlocks.
int64_t num_checkpointed_blocks(const GPT& model);

}  // namespace ms
