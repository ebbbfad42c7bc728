// Gradient placements (docs/architecture.md, "Placements"): after backward a
// gradient is partial(sum) over each group it still owes a reduction over;
// each reduction refuses a gradient it already reduced and marks what it
// produces; the optimizer step and the gradient norm refuse a partial
// gradient; a whole-model save refuses a shard. Then each planted bug
// (tensor/placement.h) must raise its named ms::Error — not a loss that is
// slightly off — and the same run without it must train.
#include <cmath>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/placement.h"
#include "parallel/dp/data_parallel.h"
#include "parallel/engine/engine.h"
#include "parallel/zero/stage.h"
#include "parallel/zero/zero_optimizer.h"
#include "tensor/factory.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"
#include "tests/temp_dir.h"

using namespace ms;
using test::error_of;
using test::has;

namespace {

constexpr int64_t B = 2, T = 16;
using Kind = Placement::Kind;

Kind kind_of(const Tensor& t, MeshAxis axis) {
  return placement_of(t, axis).kind;
}

// Plants `bug` for one scope; None again afterwards, even when a check fails.
struct Planted {
  explicit Planted(PlantedBug bug) { plant_bug(bug); }
  ~Planted() { plant_bug(PlantedBug::None); }
};

GPTConfig tiny(int64_t experts = 0) {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 16, c.block_size = T, c.dropout = 0;
  if (experts > 0) c.moe.experts = experts, c.moe.every = 1, c.moe.top_k = 1;
  return c;
}

// One optimizer step through the engine for `json` (resolved for the world),
// or the error it raised: the first line of what() (every rank reaches the
// same check before any collective it would skip).
std::string train_one_step(Communicator& world, const std::string& json, int64_t experts = 0) {
  return error_of([&] {
    TokenData data = TokenData::load("data/tinyshakespeare.txt");
    DsConfig c = parse_ds_config_for_ranks(json, world.size());
    InitOptions o;
    o.seq_len = T;
    auto [engine, optimizer, scheduler] =
        initialize(std::make_shared<GPT>(tiny(experts), 3), c, world, o);
    int64_t w = 0;
    engine.train_batch([&] { return data.train_batch(w++, world.rank(), world.size(), B, T); });
  });
}

std::string json(const std::string& extra) {
  return str_cat(R"({"train_micro_batch_size_per_gpu": )", B,
                 R"(, "gradient_accumulation_steps": 2,
                     "optimizer": {"type": "SGD", "params": {"lr": 0.05}},
                     "gradient_clipping": 1.0)",
                 extra, "}");
}

}  // namespace

TEST_CASE(
    "placement grads: DDP marks a gradient partial after backward (accumulation too), "
    "replicated after the bucket all-reduce; a second reduction, a partial update and a "
    "partial norm are refused",
    "[mpi][placement]") {
  Communicator world = Communicator::world();
  if (world.size() < 2) return;  // over one rank nothing is marked
  Tensor w = from_vector(std::vector<double>{1, 2, 3, 4}, {4}).set_requires_grad(true);
  Tensor b = from_vector(std::vector<double>{0.5}, {1}).set_requires_grad(true);
  set_label(w, "w");
  DataParallel ddp({w, b}, world, /*bucket_bytes=*/8);
  auto backward = [&] {
    Tensor x = full({4}, static_cast<double>(world.rank() + 1));
    sum(add(mul(w, x), b)).backward();
  };
  // Two micro-steps without sync: partial both times, accumulated in one slot.
  ddp.set_gradient_sync(false);
  backward();
  CHECK(kind_of(w.grad(), MeshAxis::DP) == Kind::Partial);
  CHECK(describe_placement(w.grad()).find("'w grad'") == 0);
  CHECK(describe_placement(b.grad()).find("'parameter #1 grad'") == 0);
  const Tensor slot = w.grad();
  backward();
  CHECK(w.grad().same(slot));  // the engine adds into the slot: no new tensor
  CHECK(kind_of(w.grad(), MeshAxis::DP) == Kind::Partial);
  // An update or a norm from the partial gradient: refused, naming it.
  SGD sgd({w, b}, 0.1);
  const std::string step = error_of([&] { sgd.step(); });
  CHECK(has(step, "optimizer step: 'w grad' [4] [dp: partial(sum)] is partial(sum) over dp"));
  CHECK(has(step, "a missing gradient reduction?"));
  CHECK(has(error_of([&] { grad_sq_norm({w, b}); }), "gradient norm: 'w grad'"));
  CHECK(w.to_vector() == std::vector<double>{1, 2, 3, 4});  // nothing was updated
  // The last micro-step syncs: replicated, and the average is right.
  ddp.set_gradient_sync(true);
  backward();
  ddp.finish_gradient_sync();
  CHECK(kind_of(w.grad(), MeshAxis::DP) == Kind::Replicated);
  CHECK(kind_of(b.grad(), MeshAxis::DP) == Kind::Replicated);
  const double mean_x = (world.size() + 1) / 2.0;  // ranks contribute x = r + 1
  CHECK(w.grad().to_vector() == std::vector<double>(4, 3 * mean_x));
  CHECK(error_of([&] { sgd.step(); }) == "(no error)");
  // A second reduction of the same gradient: refused before any collective.
  CHECK(has(error_of([&] { refuse_reduced_twice(w.grad(), MeshAxis::DP, world, "all-reduce"); }),
            "all-reduce: 'w grad' [4] [dp: replicated] is replicated over dp; it was already "
            "reduced"));
  // Zeroed gradients owe nothing until the next backward.
  ddp.zero_grad();
  CHECK(kind_of(w.grad(), MeshAxis::DP) == Kind::Unknown);
}

TEST_CASE("placement grads: every ZeRO stage trains with placements on, gas 2",
          "[mpi][placement]") {
  Communicator world = Communicator::world();
  for (int stage : {0, 1, 2, 3}) {
    INFO("stage " << stage);
    CHECK(train_one_step(world, json(str_cat(R"(, "zero_optimization": {"stage": )", stage,
                                             "}"))) == "(no error)");
  }
  CHECK(train_one_step(world, json(R"(, "bf16": {"enabled": true},
                                      "zero_optimization": {"stage": 2})")) == "(no error)");
  CHECK(train_one_step(world, json(R"(, "fp16": {"enabled": true},
                                      "zero_optimization": {"stage": 1,
                                        "offload_optimizer": {"device": "cpu"}})")) ==
        "(no error)");
}

TEST_CASE(
    "placement grads: ZeRO-1 leaves the per-parameter gradients partial and its partition "
    "sharded(0); a second reduce-scatter is refused",
    "[mpi][placement]") {
  Communicator world = Communicator::world();
  if (world.size() < 2) return;
  GPT model(tiny(), 5);
  ZeroOptimizer zero(model, world, {.stage = 1},
                     [](std::vector<Tensor> ps) { return std::make_unique<SGD>(ps, 0.1); });
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  Batch b = data.train_batch(0, world.rank(), world.size(), B, T);
  model.loss(b.x, b.y).backward();
  const Tensor wte = model.wte->weight;
  CHECK(kind_of(wte.grad(), MeshAxis::DP) == Kind::Partial);
  CHECK(describe_placement(wte.grad()).find("'wte.weight grad'") == 0);
  zero.reduce_gradients();
  const Tensor partition = zero.optimizer().params()[0].grad();
  CHECK(placement_of(partition, MeshAxis::DP) == Placement::sharded(0, 1));
  CHECK(kind_of(wte.grad(), MeshAxis::DP) == Kind::Partial);  // only my slice was averaged
  const std::string twice = error_of([&] { zero.stage_impl().reduce_gradients(); });
  CHECK(has(twice, "ZeRO-1 reduce-scatter: 'ZeRO gradient partition 0 ("));
  CHECK(has(twice, "is sharded over dp; this step's gradients were already reduced"));
  CHECK(std::isfinite(zero.step(0.1, 1.0)));                 // the reduced partition steps
  CHECK(kind_of(partition, MeshAxis::DP) == Kind::Partial);  // zeroed: owes again
}

TEST_CASE("placement grads: planted average-gradient-twice is refused by the second reduction",
          "[mpi][placement]") {
  Communicator world = Communicator::world();
  if (world.size() < 2) return;
  {
    Planted bug(PlantedBug::AverageGradientTwice);
    const std::string ddp = train_one_step(world, json(""));
    CHECK(has(ddp, "DDP bucket all-reduce: '"));
    CHECK(has(ddp, "grad' "));
    CHECK(has(ddp,
              "[dp: replicated] is replicated over dp; it was already reduced over this "
              "group"));
    if (world.size() % 4 == 0)  // dp 2 × tp 2: the same check under tensor parallelism
      CHECK(has(train_one_step(world, json(R"(, "tensor_parallel": {"size": 2})")),
                "[dp: replicated] is replicated over dp; it was already reduced"));
  }
  CHECK(train_one_step(world, json("")) == "(no error)");
}

TEST_CASE("placement grads: planted skip-tied-embedding-sum leaves wte's gradient partial",
          "[mpi][placement]") {
  Communicator world = Communicator::world();
  if (world.size() % 2 != 0) return;  // pp 2 × dp (1 or 2)
  const std::string pp = json(R"(, "pipeline": {"stages": 2}, "zero_optimization": {"stage": 1})");
  {
    Planted bug(PlantedBug::SkipTiedEmbeddingSum);
    const std::string e = train_one_step(world, pp);
    INFO(e);
    CHECK(has(e, "gradient norm: '"));
    CHECK(has(e, "is partial(sum) over the embedding group (first and last pipeline stage)"));
    CHECK(has(e, "'ZeRO gradient partition 0 ("));
  }
  CHECK(train_one_step(world, pp) == "(no error)");
}

TEST_CASE("placement grads: planted skip-expert-gradient-reduce leaves expert gradients partial",
          "[mpi][placement]") {
  Communicator world = Communicator::world();
  if (world.size() != 4) return;  // ep 2 × expert-dp 2: the expert-dp group must have 2 ranks
  const std::string moe =
      json(R"(, "moe": {"num_experts": 2, "expert_interval": 1, "ep_size": 2})");
  {
    Planted bug(PlantedBug::SkipExpertGradientReduce);
    const std::string e = train_one_step(world, moe, 2);
    CHECK(has(e, "gradient norm: 'h.0.mlp.experts."));
    CHECK(has(e, "[expert-dp: partial(sum)] is partial(sum) over expert-dp"));
  }
  CHECK(train_one_step(world, moe, 2) == "(no error)");
}

TEST_CASE("placement grads: planted save-shard-as-whole is refused by the whole-model save",
          "[mpi][placement]") {
  Communicator world = Communicator::world();
  if (world.size() < 2) return;
  test::TempDir tmp("placement_save");
  auto save = [&](PlantedBug planted) {
    return error_of([&] {
      Planted bug(planted);
      TokenData data = TokenData::load("data/tinyshakespeare.txt");
      DsConfig c = parse_ds_config_for_ranks(
          json(R"(, "bf16": {"enabled": true}, "zero_optimization": {"stage": 1})"), world.size());
      auto [engine, optimizer, scheduler] = initialize(std::make_shared<GPT>(tiny(), 3), c, world);
      int64_t w = 0;
      engine.train_batch([&] { return data.train_batch(w++, world.rank(), world.size(), B, T); });
      std::shared_ptr<GPT> whole = engine.gather_model();
      whole->save_safetensors((tmp.dir / str_cat("w", world.rank(), ".safetensors")).string(),
                              engine.fp32_weights(*whole));
    });
  };
  const std::string e = save(PlantedBug::SaveShardAsWhole);
  CHECK(has(e, "saving a shard as if it were whole: '"));
  CHECK(has(e, "[dp: sharded(dim 0)] is sharded over dp"));
  CHECK(save(PlantedBug::None) == "(no error)");
}
