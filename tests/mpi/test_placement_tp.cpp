// Placements over tp and cp (tensor/placement.h, docs/architecture.md
// "Placements"): what each Megatron mapping sets forward and on the gradient
// in backward, the reductions that refuse a replicated input, the tp
// parameters' placements, the residual stream of TpGPT and CpGPT, the
// sequence-parallel gradients (partial until their tp sum), and the planted
// bug "skip the row-parallel all-reduce" failing with a named error instead
// of a slightly wrong loss. Every rank builds the same tensors and runs the
// same collectives; errors are captured as strings and checked afterwards.
#include "autograd/node.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/placement.h"
#include "parallel/cp/cp_attention.h"
#include "parallel/cp/cp_gpt.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/mappings.h"
#include "parallel/tp/sequence_parallel.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/zero_optimizer.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

using Kind = Placement::Kind;
constexpr int64_t B = 2, T = 8, C = 16;

// "replicated", "partial(sum)", "sharded(dim 1)", "unknown" over tp.
std::string tp_str(const Tensor& t) {
  return placement_str(placement_of(t, MeshAxis::TP), t.dim());
}
std::string cp_str(const Tensor& t) {
  return placement_str(placement_of(t, MeshAxis::CP), t.dim());
}

Tensor placed_leaf(const Shape& shape, uint64_t seed, Communicator& tp, Placement p,
                   const std::string& label) {
  Tensor x = leaf(seeded(shape, seed));
  place_over(x, MeshAxis::TP, tp, p, label);
  return x;
}

// Runs `op` on a tensor placed `in` over tp, then backward from sum(y · g):
// the output's placement over tp and that of the gradient op's backward
// hands back (seen by an identity node in front of op: a leaf's .grad is a
// fresh copy without placements).
template <typename Op>
std::pair<std::string, std::string> placements_through(Op op, const Shape& shape, Placement in,
                                                       Communicator& tp) {
  Tensor x = placed_leaf(shape, 7, tp, in, "x");
  Tensor probe = detach(x);
  copy_placements(probe, x);
  std::string grad_placement = "(no gradient)";
  record(probe, "probe", {x}, [&grad_placement](const Tensor& g) {
    grad_placement = tp_str(g);
    return std::vector<Tensor>{g};
  });
  Tensor y = op(probe, tp);
  const std::string out = tp_str(y);
  sum(y * seeded(y.shape(), 8)).backward();
  return {out, grad_placement};
}

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = C, c.block_size = T, c.vocab_size = 256;
  return c;
}

Tensor tokens(uint64_t seed) {
  return seeded_tokens(B, T, seed);
}

// Records the placements of what flows into the block it wraps and out of it.
class PlacementSpy : public Layer {
 public:
  explicit PlacementSpy(std::shared_ptr<Layer> inner) : inner_(register_module("", inner)) {}
  Tensor forward(const Tensor& x) override {
    in_tp = tp_str(x), in_cp = cp_str(x), in_label = x.impl()->placements.label;
    Tensor y = inner_->forward(x);
    out_tp = tp_str(y), out_cp = cp_str(y), out_label = y.impl()->placements.label;
    return y;
  }
  std::string in_tp, in_cp, in_label, out_tp, out_cp, out_label;

 private:
  std::shared_ptr<Layer> inner_;
};

// Resets the planted bug however the test leaves.
struct PlantGuard {
  explicit PlantGuard(PlantedBug b) { plant_bug(b); }
  ~PlantGuard() { plant_bug(PlantedBug::None); }
};

}  // namespace

TEST_CASE(
    "tp placements: f, g, scatter/gather and the SP mappings set what Megatron's do, "
    "forward and backward",
    "[mpi][tp][placement]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const Shape full{B, T, C};
    const Placement R = Placement::replicated(), P = Placement::partial();
    const Placement S_last = Placement::sharded(-1, 3), S_seq = Placement::sharded(1, 3);

    auto f = placements_through(copy_to_tp_region, full, R, tp);
    CHECK(f.first == "replicated");
    CHECK(f.second == "replicated");  // the partial dL/dx all-reduced
    auto g = placements_through(reduce_from_tp_region, full, P, tp);
    CHECK(g.first == "replicated");
    CHECK(g.second == "replicated");  // the gradient of a partial sum: the same on every rank
    auto sc = placements_through(scatter_to_tp_region, full, R, tp);
    CHECK(sc.first == "sharded(dim 2)");
    CHECK(sc.second == "replicated");
    auto ga = placements_through(gather_from_tp_region, Shape{B, T, C / t}, S_last, tp);
    CHECK(ga.first == "replicated");
    CHECK(ga.second == "sharded(dim 2)");
    auto ssc = placements_through(scatter_to_sequence_parallel_region, full, R, tp);
    CHECK(ssc.first == "sharded(dim 1)");
    CHECK(ssc.second == "replicated");
    auto sga =
        placements_through(gather_from_sequence_parallel_region, Shape{B, T / t, C}, S_seq, tp);
    CHECK(sga.first == "replicated");
    CHECK(sga.second == "sharded(dim 1)");  // the partial gradients reduce-scattered
    auto srs = placements_through(reduce_scatter_to_sequence_parallel_region, full, P, tp);
    CHECK(srs.first == "sharded(dim 1)");
    CHECK(srs.second == "replicated");

    // Refusals happen before any collective, on every rank alike.
    const std::string g_twice =
        error_of([&] { reduce_from_tp_region(placed_leaf(full, 1, tp, R, "residual"), tp); });
    CHECK(has(g_twice,
              "reduce_from_tp_region (g): 'residual' [2, 8, 16] [tp: replicated] is "
              "replicated over tp"));
    CHECK(has(g_twice, "reduction done twice"));
    const std::string raw_twice =
        error_of([&] { tp_all_reduce(placed_leaf(full, 1, tp, R, "residual"), tp); });
    CHECK(has(raw_twice, "tp_all_reduce: 'residual'"));
    CHECK(has(raw_twice, "is replicated over tp"));
    const std::string rs_twice = error_of([&] {
      reduce_scatter_to_sequence_parallel_region(placed_leaf(full, 1, tp, R, "residual"), tp);
    });
    CHECK(has(rs_twice, "reduce_scatter_to_sequence_parallel_region: 'residual'"));
    CHECK(has(rs_twice, "is replicated over tp"));
    const std::string f_partial =
        error_of([&] { copy_to_tp_region(placed_leaf(full, 1, tp, P, "row output"), tp); });
    CHECK(has(f_partial,
              "copy_to_tp_region (f): 'row output' [2, 8, 16] [tp: partial(sum)] is "
              "partial(sum) over tp"));
    const std::string gather_partial = error_of([&] {
      gather_from_sequence_parallel_region(placed_leaf(full, 1, tp, P, "row output"), tp);
    });
    CHECK(has(gather_partial, "is partial(sum) over tp"));

    // f twice in a row: the inner f's backward receives a gradient the outer
    // one already all-reduced.
    const std::string f_twice = error_of([&] {
      Tensor x = placed_leaf(full, 1, tp, R, "x");
      Tensor y = copy_to_tp_region(copy_to_tp_region(x, tp), tp);
      sum(y * seeded(full, 2)).backward();
    });
    CHECK(has(f_twice, "copy_to_tp_region (f) backward: 'gradient of f's input'"));
    CHECK(has(f_twice, "is replicated over tp"));
  }
}

TEST_CASE("tp placements: the parallel linears, and a bias added before the reduction is refused",
          "[mpi][tp][placement]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    TpGPT m(std::make_shared<GPT>(tiny(), 42), tp, false);
    GPT& gpt = m.gpt();
    // Parameters: placed where TpGPT cuts them, labelled with their names.
    const std::vector<std::pair<std::string, std::string>> want = {
        {"wte.weight", "sharded(dim 0)"},
        {"wpe.weight", "replicated"},
        {"h.0.ln_1.weight", "replicated"},
        {"h.0.attn.c_attn.weight", "sharded(dim 1)"},
        {"h.0.attn.c_attn.bias", "sharded(dim 0)"},
        {"h.0.attn.c_proj.weight", "sharded(dim 0)"},
        {"h.0.attn.c_proj.bias", "replicated"},
        {"h.1.mlp.c_fc.weight", "sharded(dim 1)"},
        {"h.1.mlp.c_fc.bias", "sharded(dim 0)"},
        {"h.1.mlp.c_proj.weight", "sharded(dim 0)"},
        {"ln_f.bias", "replicated"}};
    for (const auto& [name, p] : want) {
      INFO(name);
      CHECK(tp_str(gpt.parameter(name)) == p);
      CHECK(gpt.parameter(name).impl()->placements.label == name);
    }

    Tensor x = placed_leaf({B, T, C}, 3, tp, Placement::replicated(), "x");
    Tensor w_col = gpt.parameter("h.0.mlp.c_fc.weight"), b_col = gpt.parameter("h.0.mlp.c_fc.bias");
    Tensor w_row = gpt.parameter("h.0.mlp.c_proj.weight"),
           b_row = gpt.parameter("h.0.mlp.c_proj.bias");
    Tensor h = column_parallel_linear(x, w_col, b_col, tp);
    CHECK(tp_str(h) == "sharded(dim 2)");
    CHECK(h.impl()->placements.label == "h.0.mlp.c_fc: column_parallel_linear output");
    Tensor y = row_parallel_linear(gelu(h), w_row, b_row, tp);
    CHECK(tp_str(y) == "replicated");
    CHECK(y.impl()->placements.label == "h.0.mlp.c_proj: row_parallel_linear output");
    Tensor y_sp = row_parallel_linear(gelu(h), w_row, b_row, tp, {.sequence_parallel = true});
    CHECK(tp_str(y_sp) == "sharded(dim 1)");

    // The row GEMM's output before g is partial; the bias added there (on
    // every rank, so t times after the sum) is refused, naming the bias.
    const std::string early_bias = error_of([&] {
      Tensor partial = linear(gelu(h), w_row);
      place_over(partial, MeshAxis::TP, tp, Placement::partial(), "row GEMM output");
      add(partial, b_row);
    });
    CHECK(has(early_bias,
              "add: 'row GEMM output' [2, 8, 16] [tp: partial(sum)] and "
              "'h.0.mlp.c_proj.bias' [16] [tp: replicated] cannot be combined over tp"));
  }
}

TEST_CASE(
    "tp placements: TpGPT's residual stream is replicated over tp (sharded along T under "
    "SP), and SP's replicated gradients are partial until their tp sum",
    "[mpi][tp][placement]") {
  Communicator world = Communicator::world();
  const Tensor idx = tokens(1), targets = tokens(2);
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    for (bool sp : {false, true}) {
      INFO("tp " << t << ", tp rank " << tp.rank() << ", sequence_parallel " << sp);
      TpGPT m(std::make_shared<GPT>(tiny(), 42), tp, sp);
      auto spy = std::make_shared<PlacementSpy>(m.gpt().blocks()[1]);
      m.gpt().replace_block(1, spy);
      Tensor loss = m.loss(idx, targets);
      const std::string resid = sp ? "sharded(dim 1)" : "replicated";
      CHECK(spy->in_tp == resid);
      CHECK(spy->in_label == "h.0 residual stream (after the MLP)");
      CHECK(spy->out_tp == resid);
      CHECK(spy->out_label == "h.1 residual stream (after the MLP)");
      loss.backward();
      std::vector<Tensor> replicated;
      for (const auto& [name, p] : m.gpt().named_parameters())
        if (tp_split_of(name) == TpSplit::Replicated) replicated.push_back(p);
      Tensor ln = m.gpt().parameter("h.0.ln_1.weight");
      CHECK(tp_str(ln.grad()) == (sp ? "partial(sum)" : "unknown"));
      if (sp) {
        CHECK(ln.grad().impl()->placements.label ==
              "gradient of h.0.ln_1.weight (this rank's T/t positions, before the tp sum)");
        allreduce_sequence_parallel_grads(replicated, tp);
        CHECK(tp_str(ln.grad()) == "replicated");
        CHECK(ln.grad().impl()->placements.label == "gradient of h.0.ln_1.weight");
        // Summed twice: refused before the collective, on every rank.
        const std::string twice =
            error_of([&] { allreduce_sequence_parallel_grads(replicated, tp); });
        CHECK(has(twice, "allreduce_sequence_parallel_grads: 'gradient of "));
        CHECK(has(twice, "is replicated over tp"));
      }
    }
  }
}

TEST_CASE(
    "tp placements: a planted skipped row-parallel all-reduce is a named error, not a "
    "wrong loss",
    "[mpi][tp][placement]") {
  Communicator world = Communicator::world();
  const Tensor idx = tokens(3), targets = tokens(4);
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    for (bool sp : {false, true}) {
      INFO("tp " << t << ", tp rank " << tp.rank() << ", sequence_parallel " << sp);
      TpGPT m(std::make_shared<GPT>(tiny(), 42), tp, sp);
      const std::string clean = error_of([&] { m.loss(idx, targets).backward(); });
      CHECK(clean == "(no error)");
      std::string planted;
      {
        PlantGuard guard(PlantedBug::SkipRowParallelAllReduce);
        planted = error_of([&] { m.loss(idx, targets); });
      }
      CHECK(planted_bug() == PlantedBug::None);
      INFO(planted);
      // The residual add of block 0 meets the attention's unreduced output.
      CHECK(has(planted, "add: 'residual stream (embedding output)'"));
      CHECK(has(planted, sp ? "[tp: sharded(dim 1)]" : "[tp: replicated]"));
      CHECK(has(planted,
                "'h.0.attn.c_proj: row_parallel_linear output (before its all-reduce)' "
                "[2, 8, 16] [tp: partial(sum)] cannot be combined over tp"));
      CHECK(has(planted, sp ? "a missing reduce-scatter?"
                            : "a missing reduction of the partial "
                              "tensor?"));
      // And the model still runs clean afterwards.
      CHECK(error_of([&] { m.loss(idx, targets); }) == "(no error)");
    }
  }
}

TEST_CASE(
    "cp placements: CpGPT's residual stream and the cp attention output are sharded along "
    "T over cp; a partial qkv is refused",
    "[mpi][cp][placement]") {
  Communicator world = Communicator::world();
  const Tensor idx = tokens(5), targets = tokens(6);
  for (int c : tp_sizes(world)) {
    Communicator cp = tp_group(world, c);
    for (const char* algo : {"ulysses", "ring", "zigzag", "allgather"}) {
      INFO("cp " << c << ", cp rank " << cp.rank() << ", " << algo);
      GPTConfig cfg = tiny();
      auto serial = std::make_shared<GPT>(cfg, 42);
      CpGPT m(serial, nullptr, cp, algo);
      auto spy = std::make_shared<PlacementSpy>(m.gpt().blocks()[1]);
      m.gpt().replace_block(1, spy);
      const std::string run = error_of([&] { m.loss(idx, targets).backward(); });
      CHECK(run == "(no error)");
      CHECK(spy->in_cp == "sharded(dim 1)");
      CHECK(spy->out_cp == "sharded(dim 1)");
    }
    Generator gen(1);
    Tensor qkv = leaf(seeded({B, T / c, 3 * C}, 9));
    Tensor y = cp_causal_attention(qkv, 4, CpAlgo::Ring, cp, 0.0, gen);
    CHECK(cp_str(y) == "sharded(dim 1)");
    place_over(qkv, MeshAxis::CP, cp, Placement::partial(), "qkv");
    const std::string partial =
        error_of([&] { cp_causal_attention(qkv, 4, CpAlgo::Ulysses, cp, 0.0, gen); });
    CHECK(has(partial, "cp_causal_attention: 'qkv' [2, "));
    CHECK(has(partial, "[cp: partial(sum)] is partial(sum) over cp"));
  }
}

TEST_CASE(
    "tp placements: ZeroOptimizer's sequence-parallel tp sum takes the partial gradients "
    "to replicated (ZeRO 0) and refuses one summed already",
    "[mpi][tp][placement]") {
  Communicator world = Communicator::world();
  const Tensor idx = tokens(7), targets = tokens(8);
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    Communicator dp = world.split(world.rank() % t, world.rank() / t);
    INFO("tp " << t << ", tp rank " << tp.rank() << ", dp " << dp.size());
    TpGPT m(std::make_shared<GPT>(tiny(), 42), tp, true);
    Tensor ln = m.gpt().parameter("h.1.ln_2.bias");
    // What the optimizer is handed: the step zeroes the gradients (and their
    // marks) after it, so the placement is read inside the update.
    std::string at_update;
    auto sgd = [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
      struct Recording : SGD {
        Recording(std::vector<Tensor> ps, Tensor watched, std::string* seen)
            : SGD(std::move(ps), 0.1), watched_(std::move(watched)), seen_(seen) {}
        void step() override {
          *seen_ = tp_str(watched_.grad());
          SGD::step();
        }
        Tensor watched_;
        std::string* seen_;
      };
      return std::make_unique<Recording>(std::move(ps), ln, &at_update);
    };
    ZeroOptimizer zero(m.gpt(), dp,
                       {.stage = 0, .tp = ZeroTensorParallel{tp, m.replicated_mask(), true}}, sgd);
    m.loss(idx, targets).backward();
    const std::string before = tp_str(ln.grad());
    zero.step(0.1, 1.0);
    CHECK(before == "partial(sum)");
    CHECK(at_update == "replicated");
    // A second backward marks them partial again; summed once by hand
    // first, the optimizer's sum is refused (a reduction done twice).
    m.loss(idx, targets).backward();
    std::vector<Tensor> replicated;
    for (const auto& [name, p] : m.gpt().named_parameters())
      if (tp_split_of(name) == TpSplit::Replicated) replicated.push_back(p);
    allreduce_sequence_parallel_grads(replicated, tp);
    const std::string twice = error_of([&] { zero.step(0.1, 1.0); });
    CHECK(has(twice, "zero: the sequence-parallel tp sum: 'gradient of "));
    CHECK(has(twice, "is replicated over tp"));
  }
}
