// The GPT as parts (nn/gpt.h): embed, blocks, head / head_loss compose to
// forward / loss exactly, and a block can be wrapped from outside without
// changing parameter names or results — what ZeRO-3, pipeline stages and
// tensor-parallel layers build on.
#include <string>
#include <utility>
#include <vector>

#include "catch_compat.h"
#include "nn/data.h"
#include "nn/gpt.h"

using namespace ms;

namespace {

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 16, c.block_size = 8;
  return c;
}

std::vector<std::string> names(const GPT& model) {
  std::vector<std::string> out;
  for (auto& [name, p] : model.named_parameters()) out.push_back(name);
  return out;
}

// Runs the block it wraps and counts the calls.
class Counting : public Layer {
 public:
  explicit Counting(std::shared_ptr<Layer> inner) : inner_(register_module("", std::move(inner))) {}
  Tensor forward(const Tensor& x) override {
    ++calls;
    return inner_->forward(x);
  }
  int calls = 0;

 private:
  std::shared_ptr<Layer> inner_;
};

}  // namespace

TEST_CASE("GPT parts compose to forward and loss", "[gpt]") {
  GPT model(tiny(), 3);
  Tensor idx = from_vector(std::vector<int32_t>{1, 5, 9, 2, 7, 7, 3, 0}, {1, 8});
  Tensor targets = from_vector(std::vector<int32_t>{5, 9, 2, 7, 7, 3, 0, 4}, {1, 8});
  Tensor x = model.embed(idx);
  CHECK(x.shape() == Shape{1, 8, 16});
  for (const auto& block : model.blocks()) x = block->forward(x);
  CHECK(model.head(x).to_vector() == model.forward(idx).to_vector());
  CHECK(model.head_loss(x, targets).item() == model.loss(idx, targets).item());
}

TEST_CASE("GPT::replace_block wraps a block from outside, names and results unchanged", "[gpt]") {
  GPT model(tiny(), 3);
  Tensor idx = from_vector(std::vector<int32_t>{4, 4, 1}, {1, 3});
  const std::vector<std::string> before = names(model);
  const std::vector<double> logits = model.forward(idx).to_vector();
  auto wrapper = std::make_shared<Counting>(model.blocks()[1]);
  std::shared_ptr<Layer> original = model.replace_block(1, wrapper);
  CHECK(model.blocks()[1] == wrapper);
  CHECK(names(model) == before);  // "h.1.attn.c_attn.weight", not "h.1..attn..."
  CHECK(model.forward(idx).to_vector() == logits);
  CHECK(wrapper->calls == 1);
  CHECK(model.replace_block(1, original) == wrapper);  // and undone
  CHECK(model.forward(idx).to_vector() == logits);
  CHECK(wrapper->calls == 1);
  CHECK_THROWS_WITH(model.replace_block(2, original),
                    Catch::Contains("block 2") && Catch::Contains("has 2"));
}
