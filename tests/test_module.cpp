// Module::replace_parameter: a parameter takes a new shape and data in place,
// and every handle to it — the layer's member, named_parameters(), the
// tensor an optimizer was given — sees the new one (what tensor parallelism
// needs to cut a serial model to its shards, parallel/tp/tp_gpt.h).
#include "catch_compat.h"
#include "nn/gpt.h"

using namespace ms;

TEST_CASE("replace_parameter: every handle sees the new shape and values", "[module]") {
  GPTConfig c;
  c.n_layer = 1, c.n_head = 2, c.n_embd = 8, c.block_size = 4;
  GPT model(c, 3);
  Tensor held = model.parameter("h.0.mlp.c_fc.weight");  // (8, 32), as an optimizer holds it
  Tensor full = clone(held);
  held.set_grad(ones_like(held));
  Tensor shard = contiguous(narrow(full, 1, 16, 16));  // (8, 16)
  model.replace_parameter("h.0.mlp.c_fc.weight", shard);

  auto mlp = std::dynamic_pointer_cast<Block>(model.blocks()[0])->mlp;
  for (const Tensor& t : {held, mlp->c_fc->weight, model.parameter("h.0.mlp.c_fc.weight")}) {
    CHECK(t.shape() == Shape{8, 16});
    CHECK(t.requires_grad());
    CHECK(detach(t).to_vector() == narrow(full, 1, 16, 16).to_vector());
  }
  CHECK(held.same(mlp->c_fc->weight));
  CHECK(!held.grad().defined());  // a gradient of the old shape would be wrong
  CHECK(model.num_parameters() == GPT(c, 3).num_parameters() - 8 * 16);
}

TEST_CASE("replace_parameter: errors name the path", "[module]") {
  GPTConfig c;
  c.n_layer = 1, c.n_head = 2, c.n_embd = 8, c.block_size = 4;
  GPT model(c, 3);
  CHECK_THROWS_WITH(model.replace_parameter("h.0.nope", zeros({2})),
                    Catch::Contains("no parameter named 'h.0.nope'"));
  CHECK_THROWS_WITH(model.replace_parameter("ln_f.weight", zeros({8}, DType::F64)),
                    Catch::Contains("'ln_f.weight' must be replaced by a contiguous f32"));
  CHECK_THROWS_WITH(
      model.replace_parameter("h.0.attn.c_attn.weight", transpose(zeros({24, 8}), 0, 1)),
      Catch::Contains("contiguous"));
}
