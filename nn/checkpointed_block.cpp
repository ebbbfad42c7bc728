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
                    generators_, {}, "checkpointed_block");
}

std::vector<std::shared_ptr<Layer>> checkpoint_blocks(GPT& model) {
  std::vector<std::shared_ptr<Layer>> replaced;
  for (size_t i = 0; i < model.blocks().size(); ++i)
    replaced.push_back(
        model.replace_block(i, std::make_shared<CheckpointedBlock>(model.blocks()[i])));
  return replaced;
}

}  // namespace ms
