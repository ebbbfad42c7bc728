#include "nn/checkpointed_block.h"

#include <utility>

#include "autograd/checkpoint.h"

namespace ms {

std::vector<Generator*> dropout_generators(Module& m) {
  std::vector<Generator*> gens;
  for (Module* child : m.modules())
    if (auto* d = dynamic_cast<Dropout*>(child)) gens.push_back(&d->generator());
  return gens;
}

CheckpointedBlock::CheckpointedBlock(std::shared_ptr<Layer> block)
    : block_(register_module("", std::move(block))) {
  MS_CHECK(block_ != nullptr, "CheckpointedBlock: no block to wrap");
  generators_ = dropout_generators(*block_);
}

Tensor CheckpointedBlock::forward(const Tensor& x) {
  // The lambda holds the block alive for as long as the graph needs to recompute it.
  return checkpoint([block = block_](const Tensor& in) { return block->forward(in); }, x,
                    generators_, "checkpointed_block");
}

std::vector<std::shared_ptr<Layer>> checkpoint_blocks(GPT& model, int64_t count) {
  const int64_t L = static_cast<int64_t>(model.blocks().size());
  MS_CHECK(count <= L, "checkpoint_blocks: ", count, " blocks to checkpoint, but the model has ", L,
           " (use at most n_layer, or -1 for all)");
  const int64_t n = count < 0 ? L : count;
  std::vector<std::shared_ptr<Layer>> replaced;
  for (int64_t i = 0; i < n; ++i) {
    std::shared_ptr<Layer> block = model.blocks()[i];
    if (std::dynamic_pointer_cast<CheckpointedBlock>(block))
      replaced.push_back(block);
    else
      replaced.push_back(model.replace_block(i, std::make_shared<CheckpointedBlock>(block)));
  }
  return replaced;
}

int64_t num_checkpointed_blocks(const GPT& model) {
  int64_t n = 0;
  for (const auto& b : model.blocks())
    n += std::dynamic_pointer_cast<CheckpointedBlock>(b) != nullptr;
  return n;
}

}  // namespace ms
