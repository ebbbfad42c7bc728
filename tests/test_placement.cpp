// The placement rules of tensor/placement.h, one case per rule: what each
// elementwise op makes of its inputs' placements, and the named error for
// each combination that would be a silent numeric bug across ranks. No
// collective runs here; tests/mpi/test_placement_*.cpp check the parallel
// code that sets and consumes placements.
#include "autograd/ops.h"
#include "catch_compat.h"
#include "tensor/placement.h"

using namespace ms;

namespace {

using Kind = Placement::Kind;

Tensor labelled(const Shape& shape, const std::string& label, MeshAxis axis, Placement p) {
  Tensor t = ones(shape);
  set_placement(t, axis, p, label);
  return t;
}

Tensor partial_tp(const Shape& shape, const std::string& label = "row_parallel_linear output") {
  return labelled(shape, label, MeshAxis::TP, Placement::partial());
}
Tensor replicated_tp(const Shape& shape, const std::string& label = "residual") {
  return labelled(shape, label, MeshAxis::TP, Placement::replicated());
}
Tensor sharded_tp(const Shape& shape, int64_t dim, const std::string& label = "shard") {
  return labelled(shape, label, MeshAxis::TP, Placement::sharded(dim, (int64_t)shape.size()));
}

Placement tp_of(const Tensor& t) {
  return placement_of(t, MeshAxis::TP);
}

}  // namespace

TEST_CASE("placement: tensors start unknown and unknown combines with anything", "[placement]") {
  Tensor a = ones({2, 3}), b = ones({2, 3});
  REQUIRE(tp_of(a).is(Kind::Unknown));
  REQUIRE(tp_of(add(a, b)).is(Kind::Unknown));
  // An unknown side takes the other's placement, never an error.
  REQUIRE(tp_of(add(a, partial_tp({2, 3}))).is(Kind::Partial));
  REQUIRE(tp_of(mul(replicated_tp({2, 3}), a)).is(Kind::Replicated));
}

TEST_CASE("placement: sharded dims print from the front and match from the end", "[placement]") {
  REQUIRE(Placement::sharded(1, 3) == Placement::sharded(-2, 3));
  REQUIRE(placement_str(Placement::sharded(-1, 3), 3) == "sharded(dim 2)");
  REQUIRE(placement_str(Placement::partial(), 3) == "partial(sum)");
  REQUIRE_THROWS_WITH(Placement::sharded(3, 3), Catch::Contains("dim 3 is out of range for a 3-D"));
  Tensor t = sharded_tp({2, 4, 8}, 1, "x");
  REQUIRE(describe_placement(t) == "'x' [2, 4, 8] [tp: sharded(dim 1)]");
}

TEST_CASE("placement: sum rules R+R, P+P, S+S and S+broadcast R", "[placement]") {
  REQUIRE(tp_of(add(replicated_tp({2, 3}), replicated_tp({2, 3}))).is(Kind::Replicated));
  REQUIRE(tp_of(add(partial_tp({2, 3}), partial_tp({2, 3}))).is(Kind::Partial));
  REQUIRE(tp_of(sub(sharded_tp({2, 4, 8}, 1), sharded_tp({2, 4, 8}, 1))) ==
          Placement::sharded(1, 3));
  // A (C) bias replicated over tp, broadcast over the T shard of sequence
  // parallelism: the sum stays sharded along T.
  Tensor y = add(sharded_tp({2, 4, 8}, 1), replicated_tp({8}, "bias"));
  REQUIRE(tp_of(y) == Placement::sharded(1, 3));
  // A column-parallel output (B, T, out/t) plus its bias shard (out/t): both
  // sharded along the last dim.
  REQUIRE(tp_of(add(sharded_tp({2, 4, 8}, -1), sharded_tp({8}, 0, "bias shard"))) ==
          Placement::sharded(-1, 3));
  REQUIRE(placement_of(y, MeshAxis::TP).is(Kind::Sharded));
  REQUIRE(describe_placement(y).find("'output of add'") == 0);
}

TEST_CASE("placement: a partial plus a replicated tensor is the skipped all-reduce",
          "[placement]") {
  // Megatron's row-parallel output before its all-reduce (g) plus the residual
  // stream: after the reduction the residual would count tp times.
  REQUIRE_THROWS_WITH(add(replicated_tp({2, 4, 8}), partial_tp({2, 4, 8})),
                      Catch::Contains("add: 'residual' [2, 4, 8] [tp: replicated] and "
                                      "'row_parallel_linear output' [2, 4, 8] [tp: "
                                      "partial(sum)] cannot be combined over tp") &&
                          Catch::Contains("a missing reduction of the partial tensor?"));
  // Adding the bias before the reduction: the same bug on a (C) bias.
  REQUIRE_THROWS_WITH(add(partial_tp({2, 4, 8}), replicated_tp({8}, "c_proj.bias")),
                      Catch::Contains("'c_proj.bias' [8] [tp: replicated]"));
  // A scalar added to a partial sum is added once per rank.
  REQUIRE_THROWS_WITH(add(partial_tp({2, 3}), 1.0),
                      Catch::Contains("add (a scalar): 'row_parallel_linear output' [2, 3] [tp: "
                                      "partial(sum)] is partial(sum) over tp"));
}

TEST_CASE("placement: partial with sharded and mismatched shards are errors", "[placement]") {
  REQUIRE_THROWS_WITH(add(partial_tp({2, 4, 8}), sharded_tp({2, 4, 8}, 1)),
                      Catch::Contains("a missing reduce-scatter?"));
  REQUIRE_THROWS_WITH(add(sharded_tp({2, 4, 8}, 1), sharded_tp({2, 4, 8}, 2)),
                      Catch::Contains("sharded along different dims"));
  // A full (T) replicated tensor meeting a T shard: every rank adds the wrong
  // block (the un-split position embedding under sequence parallelism).
  REQUIRE_THROWS_WITH(add(sharded_tp({2, 4, 8}, 1), replicated_tp({4, 8}, "wpe")),
                      Catch::Contains("a missing split or all-gather?"));
}

TEST_CASE("placement: products are linear in one partial factor", "[placement]") {
  REQUIRE(tp_of(mul(partial_tp({2, 3}), replicated_tp({2, 3}))).is(Kind::Partial));
  REQUIRE(tp_of(mul(replicated_tp({3}), partial_tp({2, 3}))).is(Kind::Partial));
  REQUIRE(tp_of(div(partial_tp({2, 3}), replicated_tp({2, 3}))).is(Kind::Partial));
  REQUIRE(tp_of(mul(partial_tp({2, 3}), 0.5)).is(Kind::Partial));
  REQUIRE(tp_of(neg(partial_tp({2, 3}))).is(Kind::Partial));
  REQUIRE_THROWS_WITH(mul(partial_tp({2, 3}), partial_tp({2, 3})),
                      Catch::Contains("a product of two partial sums"));
  REQUIRE_THROWS_WITH(div(replicated_tp({2, 3}), partial_tp({2, 3})),
                      Catch::Contains("dividing by a partial sum"));
  REQUIRE_THROWS_WITH(mul(partial_tp({2, 3}), sharded_tp({2, 3}, 1)),
                      Catch::Contains("a partial sum times a shard"));
}

TEST_CASE("placement: nonlinear ops refuse a partial input", "[placement]") {
  Tensor p = partial_tp({2, 4, 8});
  REQUIRE_THROWS_WITH(gelu(p), Catch::Contains("gelu: 'row_parallel_linear output' [2, 4, 8] "
                                               "[tp: partial(sum)] is partial(sum) over tp; gelu "
                                               "is not linear") &&
                                   Catch::Contains("a missing all-reduce before gelu?"));
  REQUIRE_THROWS_WITH(exp(p), Catch::Contains("exp: "));
  REQUIRE_THROWS_WITH(tanh(p), Catch::Contains("tanh: "));
  Tensor w = ones({8}), b = zeros({8});
  REQUIRE_THROWS_WITH(layernorm(p, w, b, 1e-5), Catch::Contains("layernorm: "));
  REQUIRE_THROWS_WITH(softmax(p, -1), Catch::Contains("softmax: "));
  // Nonlinear ops keep the other kinds.
  REQUIRE(tp_of(gelu(sharded_tp({2, 4, 8}, -1))) == Placement::sharded(-1, 3));
  REQUIRE(tp_of(gelu(replicated_tp({2, 4, 8}))).is(Kind::Replicated));
}

TEST_CASE("placement: row-wise ops refuse a shard along the dim they reduce", "[placement]") {
  Tensor w = ones({8}), b = zeros({8});
  // Sequence parallelism shards T: layernorm over C is fine.
  REQUIRE(tp_of(layernorm(sharded_tp({2, 4, 8}, 1), w, b, 1e-5)) == Placement::sharded(1, 3));
  // A column-parallel output is sharded along C: layernorm over it is not.
  REQUIRE_THROWS_WITH(
      layernorm(sharded_tp({2, 4, 8}, -1, "c_fc output"), ones({8}), zeros({8}), 1e-5),
      Catch::Contains("layernorm: 'c_fc output' [2, 4, 8] [tp: sharded(dim 2)] "
                      "is sharded over tp along dim 2"));
  REQUIRE_THROWS_WITH(softmax(sharded_tp({2, 8}, -1, "logits shard"), -1),
                      Catch::Contains("a missing all-gather?"));
  REQUIRE_THROWS_WITH(cross_entropy(sharded_tp({4, 8}, -1, "logits shard"), zeros({4}, DType::I32)),
                      Catch::Contains("cross_entropy: 'logits shard'"));
}

TEST_CASE("placement: dropout is linear, and the rules hold under bf16", "[placement]") {
  Generator gen(1);
  const Tensor dropped = dropout(partial_tp({2, 4, 8}), 0.5, gen);
  REQUIRE(tp_of(dropped).is(Kind::Partial));
  // The layer that made it is still named after the dropout.
  REQUIRE(describe_placement(dropped).find("'row_parallel_linear output, after dropout'") == 0);
  Tensor r = to(ones({2, 4, 8}), DType::BF16);
  Tensor p = to(ones({2, 4, 8}), DType::BF16);
  set_placement(r, MeshAxis::TP, Placement::replicated(), "residual");
  set_placement(p, MeshAxis::TP, Placement::partial(), "row_parallel_linear output");
  REQUIRE_THROWS_WITH(add(r, p), Catch::Contains("a missing reduction"));
  Tensor q = to(ones({2, 4, 8}), DType::BF16);
  set_placement(q, MeshAxis::TP, Placement::replicated());
  REQUIRE(tp_of(add(r, q)).is(Kind::Replicated));
}

TEST_CASE("placement: each axis is combined on its own", "[placement]") {
  // Replicated over tp and partial over dp (a gradient before the dp
  // all-reduce) plus a tensor partial over dp only: fine on both axes.
  Tensor g = replicated_tp({4});
  set_placement(g, MeshAxis::DP, Placement::partial());
  Tensor h = ones({4});
  set_placement(h, MeshAxis::DP, Placement::partial());
  Tensor s = add(g, h);
  REQUIRE(tp_of(s).is(Kind::Replicated));
  REQUIRE(placement_of(s, MeshAxis::DP).is(Kind::Partial));
  REQUIRE(describe_placement(s) == "'output of add' [4] [tp: replicated, dp: partial(sum)]");
}

TEST_CASE("placement: refuse_placement and the planted-bug switch", "[placement]") {
  Tensor r = replicated_tp({4}, "h.0.mlp.c_fc.weight grad");
  REQUIRE_THROWS_WITH(refuse_placement(r, MeshAxis::TP, Kind::Replicated, "all_reduce", "why"),
                      Catch::Contains("all_reduce: 'h.0.mlp.c_fc.weight grad' [4] [tp: "
                                      "replicated] is replicated over tp; why"));
  REQUIRE_NOTHROW(refuse_placement(r, MeshAxis::DP, Kind::Replicated, "all_reduce", "why"));
  REQUIRE(planted_bug() == PlantedBug::None);
  REQUIRE(std::string(planted_bug_name(PlantedBug::SkipTiedEmbeddingSum)) ==
          "skip-tied-embedding-sum");
}

TEST_CASE("placement: copies keep placements (clone, to a device and back), views start unknown",
          "[placement]") {
  Tensor p = partial_tp({2, 3});
  const std::string was = describe_placement(p);
  CHECK(describe_placement(clone(p)) == was);
  // A shard moved to a device and back is still a shard: a whole-model save
  // of the host copy must still refuse it.
  Tensor s = sharded_tp({4, 6}, 0, "wte.weight");
  Tensor back = s.to(Device::Sim).to(Device::CPU);
  CHECK(describe_placement(s.to(Device::Sim)) == describe_placement(s));
  CHECK(describe_placement(back) == describe_placement(s));
  CHECK_THROWS_WITH(refuse_placement(back, MeshAxis::TP, Kind::Sharded, "save", "why"),
                    Catch::Contains("save: 'wte.weight' [4, 6] [tp: sharded(dim 0)]"));
  // A view may be a block of its base: it starts unknown, and so does the
  // copy that contiguous() makes of it.
  CHECK(tp_of(narrow(s, 0, 0, 2)).is(Kind::Unknown));
  CHECK(tp_of(contiguous(transpose(s, 0, 1))).is(Kind::Unknown));
}

TEST_CASE("placement: a leaf's first gradient keeps what backward made it", "[placement]") {
  // The gradient arriving at y is partial over tp (as the tp mappings'
  // backward marks it); scaling keeps that, and the engine clones the first
  // gradient a leaf receives: the clone must not forget that it still owes
  // its tp sum, or the optimizer's check would let it through.
  Tensor x = ones({2, 3}).set_requires_grad(true);
  Tensor y = mul(x, 2.0);
  y.backward(partial_tp({2, 3}, "h.0 output grad"));
  REQUIRE(x.grad().defined());
  CHECK(tp_of(x.grad()).is(Kind::Partial));
}
