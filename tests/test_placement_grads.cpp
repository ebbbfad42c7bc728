// The gradient-side consumers of placements, in one process (no collective):
// the optimizer step and the gradient norm refuse a gradient still partial
// over any axis, naming it, its placements and the axis; a whole-model save
// refuses a shard. The reducers that set these placements are exercised over
// real groups in tests/mpi/test_placement_grads.cpp.
#include "autograd/ops.h"
#include "catch_compat.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "tensor/factory.h"
#include "tensor/placement.h"
#include "tests/temp_dir.h"

using namespace ms;
using Catch::Contains;

namespace {

// A parameter whose gradient is `grad_placement` over `axis`.
Tensor param_with_grad(MeshAxis axis, Placement grad_placement) {
  Tensor p = from_vector(std::vector<double>{1, 2, 3}, {3}).set_requires_grad(true);
  Tensor g = full({3}, 0.5);
  set_placement(g, axis, grad_placement, "h.0.mlp.c_fc.weight grad");
  p.set_grad(g);
  return p;
}

}  // namespace

TEST_CASE("placement grads: the optimizer refuses a partial gradient on every axis, by name",
          "[placement]") {
  for (MeshAxis axis : {MeshAxis::TP, MeshAxis::CP, MeshAxis::DP, MeshAxis::EP, MeshAxis::ExpertDP,
                        MeshAxis::Embedding}) {
    INFO(axis_name(axis));
    Tensor p = param_with_grad(axis, Placement::partial());
    const std::string want = str_cat(
        "optimizer step: 'h.0.mlp.c_fc.weight grad' [3] [", axis_name(axis),
        ": partial(sum)] is partial(sum) over ", axis_name(axis),
        "; the gradient still owes its reduction over this group, so every rank would apply a "
        "different value (a missing gradient reduction?)");
    SGD sgd({p}, 0.1, 0.9);
    CHECK_THROWS_WITH(sgd.step(), want);
    AdamW adamw({p}, 0.1);
    CHECK_THROWS_WITH(adamw.step(), want);
    CHECK(p.to_vector() == std::vector<double>{1, 2, 3});  // refused before any update
    CHECK_THROWS_WITH(grad_sq_norm({p}), Contains("gradient norm: 'h.0.mlp.c_fc.weight grad'"));
    CHECK_THROWS_WITH(clip_grad_norm({p}, 1.0), Contains("gradient norm: "));
  }
}

TEST_CASE("placement grads: reduced, sharded and unknown gradients step", "[placement]") {
  for (Placement ok : {Placement::replicated(), Placement::sharded(0, 1), Placement::unknown()}) {
    Tensor p = param_with_grad(MeshAxis::DP, ok);
    SGD sgd({p}, 0.1);
    CHECK_NOTHROW(sgd.step());
    CHECK(p.to_vector() == std::vector<double>{0.95f, 1.95f, 2.95f});  // f32: p - 0.1·0.5
    CHECK(grad_sq_norm({p}) == 0.75);
  }
}

TEST_CASE("placement grads: a whole-model save refuses a shard on any axis", "[placement]") {
  GPTConfig c;
  c.n_layer = 1, c.n_head = 2, c.n_embd = 16, c.block_size = 8;
  GPT model(c, 1);
  test::TempDir tmp("placement_save");
  std::map<std::string, Tensor> values;
  for (const auto& [name, p] : model.named_parameters()) values[name] = clone(detach(p));
  set_placement(values.at("h.0.attn.c_attn.weight"), MeshAxis::TP, Placement::sharded(-1, 2),
                "h.0.attn.c_attn.weight");
  CHECK_THROWS_WITH(model.save_safetensors(tmp.file("w.safetensors"), values),
                    "saving a shard as if it were whole: 'h.0.attn.c_attn.weight' [16, 48] [tp: "
                    "sharded(dim 1)] is sharded over tp; the file would hold one rank's block "
                    "where the whole tensor belongs (a missing gather before the save?)");
  set_placement(values.at("h.0.attn.c_attn.weight"), MeshAxis::TP, Placement::replicated());
  CHECK_NOTHROW(model.save_safetensors(tmp.file("w.safetensors"), values));
}
