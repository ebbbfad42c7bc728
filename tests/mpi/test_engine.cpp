// The engine (parallel/engine/engine.h) against the loop it replaces: the
// same model, data and optimizer driven by hand through ZeroOptimizer must
// give bit-identical losses and weights when the engine runs DeepSpeed's
// loop (step() after every micro-batch, gradient_accumulation_steps 4). Then
// DeepSpeed's boundary semantics (the scheduler and the update only at the
// boundary, the first update at schedule_lr(-1) = 0), train_batch against
// forward/backward/step, the pipeline's refusal of forward, the errors, the
// config's bf16 and activation_checkpointing, and save/load_checkpoint.
#include <cmath>
#include <filesystem>
#include <tuple>

#include "autograd/ops.h"
#include "nn/checkpointed_block.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/engine/engine.h"
#include "parallel/engine/lr_schedules.h"
#include "tests/catch_compat.h"

using namespace ms;
using Catch::Contains;

namespace {

constexpr int64_t B = 2, T = 16, kGas = 4;

GPTConfig tiny(double dropout = 0.1) {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 32, c.block_size = T, c.dropout = dropout;
  return c;
}

TokenData text() {
  return TokenData::load("data/tinyshakespeare.txt");
}

std::string config_json(int stage, const std::string& extra = "") {
  return str_cat(R"({"train_micro_batch_size_per_gpu": )", B,
                 R"(, "gradient_accumulation_steps": )", kGas,
                 R"(, "optimizer": {"type": "AdamW", "params": {"lr": 2e-3, "betas": [0.9, 0.95],
                     "weight_decay": 0.1}}, "gradient_clipping": 0.5,
                     "zero_optimization": {"stage": )",
                 stage, "}", extra, "}");
}

std::vector<std::vector<double>> weights(GPT& g) {
  std::vector<std::vector<double>> w;
  for (const Tensor& p : g.parameters()) w.push_back(p.to_vector());
  return w;
}

struct Trace {
  std::vector<double> losses, norms;
  std::vector<std::vector<double>> params;
};

// What cli/train.cpp did before the engine: ZeroOptimizer by hand, the sync
// on the last micro-step, the loss scaled by 1/gas, one step(lr, clip).
// Every stage with dropout: stage 3 keeps the forward's masks too (stage3.h).
double dropout_for(int) {
  return 0.1;
}

Trace by_hand(Communicator& world, int stage, int steps) {
  TokenData data = text();
  GPT model(tiny(dropout_for(stage)), 7);
  ZeroOptimizer zero(model, world, {.stage = stage}, [](std::vector<Tensor> ps) {
    return std::make_unique<AdamW>(std::move(ps), 2e-3, 0.9, 0.95, 1e-8, 0.1);
  });
  Trace t;
  for (int s = 0; s < steps; ++s) {
    double sum = 0;
    for (int64_t m = 0; m < kGas; ++m) {
      zero.set_gradient_sync(m + 1 == kGas);
      Batch b = data.train_batch(s * kGas + m, world.rank(), world.size(), B, T);
      Tensor loss = model.loss(b.x, b.y);
      sum += loss.item();
      mul(loss, 1.0 / kGas).backward();
    }
    t.losses.push_back(sum);
    t.norms.push_back(zero.step(2e-3, 0.5));
  }
  zero.gather_full_parameters();
  t.params = weights(model);
  return t;
}

// The same through the engine, DeepSpeed's way. A client schedule keeps the
// lr constant at 2e-3, as by_hand's.
Trace by_engine(Communicator& world, int stage, int steps) {
  TokenData data = text();
  DsConfig c = parse_ds_config(config_json(stage), world.size());
  InitOptions o;
  o.lr_scheduler = [](int64_t) { return 2e-3; };
  auto [engine, optimizer, scheduler] =
      initialize(std::make_shared<GPT>(tiny(dropout_for(stage)), 7), c, world, o);
  Trace t;
  for (int s = 0; s < steps; ++s) {
    double sum = 0;
    for (int64_t m = 0; m < kGas; ++m) {
      Batch b = data.train_batch(s * kGas + m, world.rank(), world.size(), B, T);
      Tensor loss = engine.forward(b.x, b.y);
      sum += loss.item();
      engine.backward(loss);
      engine.step();
    }
    t.losses.push_back(sum);
    t.norms.push_back(engine.last_grad_norm());
  }
  t.params = weights(*engine.gather_model());
  return t;
}

}  // namespace

TEST_CASE(
    "engine: gas 4 with step() after every micro-batch trains bit-identically to the "
    "hand-written ZeroOptimizer loop",
    "[mpi][engine]") {
  Communicator world = Communicator::world();
  for (int stage : {0, 2, 3}) {
    INFO("ZeRO stage " << stage << ", " << world.size() << " ranks");
    Trace a = by_hand(world, stage, 3), e = by_engine(world, stage, 3);
    CHECK(a.losses == e.losses);
    CHECK(a.norms == e.norms);
    CHECK(a.params == e.params);
  }
}

TEST_CASE("engine: the update and the LR scheduler advance only at the accumulation boundary",
          "[mpi][engine]") {
  Communicator world = Communicator::world();
  TokenData data = text();
  // WarmupLR, linear over 4 updates from 0 to 2e-3: 0 before the first
  // scheduler step (DeepSpeed's constructor sets the lr from get_lr() at -1).
  DsConfig c = parse_ds_config(
      config_json(1, R"(, "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 4,
                          "warmup_type": "linear", "warmup_max_lr": 2e-3}})"),
      world.size());
  auto [engine, optimizer, scheduler] = initialize(std::make_shared<GPT>(tiny(0), 3), c, world);
  CHECK(scheduler.name() == "WarmupLR");
  std::vector<std::vector<double>> before = weights(engine.gpt());
  std::vector<double> lrs;
  int64_t window = 0;
  for (int s = 0; s < 3; ++s) {
    for (int64_t m = 0; m < kGas; ++m) {
      CHECK(engine.is_gradient_accumulation_boundary() == (m + 1 == kGas));
      const double lr = engine.get_lr();
      const int64_t it = scheduler.last_batch_iteration();
      Batch b = data.train_batch(window++, world.rank(), world.size(), B, T);
      engine.backward(engine.forward(b.x, b.y));
      engine.step();
      CHECK(engine.micro_steps() == s * kGas + m + 1);
      if (m + 1 < kGas) {  // not the boundary: nothing moved
        CHECK(engine.global_steps() == s);
        CHECK(engine.get_lr() == lr);
        CHECK(scheduler.last_batch_iteration() == it);
        CHECK(weights(engine.gpt()) == before);
      } else {
        CHECK(engine.global_steps() == s + 1);
        CHECK(scheduler.last_batch_iteration() == it + 1);
        lrs.push_back(lr);
        // lr 0 for the first update (it = -1) and the second (it = 0: linear
        // warmup starts at warmup_min_lr); AdamW at lr 0 leaves every weight.
        if (s < 2)
          CHECK(weights(engine.gpt()) == before);
        else
          CHECK(weights(engine.gpt()) != before);
        before = weights(engine.gpt());
      }
    }
  }
  CHECK(lrs == std::vector<double>{0.0, engine::schedule_lr(*c.scheduler, 2e-3, 0),
                                   engine::schedule_lr(*c.scheduler, 2e-3, 1)});
  CHECK(lrs[2] == Approx(2e-3 * 0.25));  // it = 1 of 4: γ = 1/4
  CHECK(optimizer.lr() == lrs[2]);       // the optimizer ran at the scheduler's lr
}

TEST_CASE(
    "engine: train_batch is forward/backward/step over gas micro-batches, with the "
    "global mean loss",
    "[mpi][engine]") {
  Communicator world = Communicator::world();
  TokenData data = text();
  DsConfig c = parse_ds_config(config_json(2), world.size());
  auto [a, oa, sa] = initialize(std::make_shared<GPT>(tiny(), 5), c, world);
  auto [e, oe, se] = initialize(std::make_shared<GPT>(tiny(), 5), c, world);
  for (int s = 0; s < 2; ++s) {
    int64_t wa = s * kGas, we = s * kGas;
    const double got =
        a.train_batch([&] { return data.train_batch(wa++, world.rank(), world.size(), B, T); });
    double sum = 0;
    for (int64_t m = 0; m < kGas; ++m) {
      Batch b = data.train_batch(we++, world.rank(), world.size(), B, T);
      Tensor loss = e.forward(b.x, b.y);
      sum += loss.item();
      e.backward(loss);
      e.step();
    }
    Tensor mean = full({1}, sum / kGas, DType::F64);
    world.all_reduce(mean, ReduceOp::Avg);
    CHECK(got == mean.item());
    CHECK(a.global_steps() == s + 1);
  }
  CHECK(weights(a.gpt()) == weights(e.gpt()));
}

TEST_CASE("engine: a pipeline runs train_batch and refuses forward", "[mpi][engine]") {
  Communicator world = Communicator::world();
  if (world.size() != 2) return;  // pp 2 × dp 1
  TokenData data = text();
  DsConfig c = parse_ds_config_for_ranks(
      R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4,
          "optimizer": {"type": "SGD", "params": {"lr": 0.05}},
          "pipeline": {"stages": 2}})",
      2);
  InitOptions o;
  o.seq_len = T;
  auto [engine, optimizer, scheduler] = initialize(std::make_shared<GPT>(tiny(0), 1), c, world, o);
  REQUIRE(engine.pipeline() != nullptr);
  Batch b = data.train_batch(0, 0, 1, B, T);
  CHECK_THROWS_WITH(engine.forward(b.x, b.y), Contains("use engine.train_batch"));
  int64_t w = 0;
  double first = engine.train_batch([&] { return data.train_batch(w++, 0, 1, B, T); });
  double second = engine.train_batch([&] { return data.train_batch(w++, 0, 1, B, T); });
  CHECK(std::isfinite(first));
  CHECK(std::isfinite(second));
  CHECK(engine.global_steps() == 2);
  CHECK(engine.micro_steps() == 8);
  // Both stages hold the last stage's loss.
  Tensor l = full({1}, first, DType::F64), hi = clone(l);
  world.all_reduce(hi, ReduceOp::Max);
  CHECK(hi.item() == first);
}

TEST_CASE("engine: errors name the key", "[mpi][engine]") {
  Communicator world = Communicator::world();
  auto model = [] { return std::make_shared<GPT>(tiny(), 1); };
  auto cfg = [&](const std::string& extra) {
    return parse_ds_config(config_json(0, extra), world.size());
  };
  CHECK_THROWS_WITH(
      initialize(model(), cfg(R"(, "activation_checkpointing": {"partition_activations": true})"),
                 world),
      Contains("activation_checkpointing.partition_activations true: splitting the checkpointed "
               "inputs over the tensor-parallel ranks is not built yet"));
  CHECK_THROWS_WITH(initialize(model(), cfg(R"(, "communication_data_type": "fp32")"), world),
                    Contains("communication_data_type \"fp32\" needs bf16.enabled or fp16.enabled"));
  CHECK_THROWS_WITH(initialize(model(), cfg(R"(, "bf16": {"enabled": true}, "communication_data_type": "fp16")"), world),
                    Contains("communication_data_type \"fp16\" with bf16.enabled: valid are \"fp32\" or \"bf16\""));
  // Resolved for another world than the job's.
  DsConfig other = parse_ds_config(config_json(0), world.size() + 1);
  CHECK_THROWS_WITH(initialize(model(), other, world),
                    Contains(str_cat("the data-parallel size ", world.size() + 1)));
  DsConfig no_opt = parse_ds_config(R"({"train_micro_batch_size_per_gpu": 2})", world.size());
  CHECK_THROWS_WITH(initialize(model(), no_opt, world),
                    Contains("no \"optimizer\" section and no client optimizer"));
  auto [engine, optimizer, scheduler] = initialize(model(), cfg(""), world);
  CHECK(scheduler.name() == "constant");
  CHECK(engine.get_lr() == 2e-3);
  engine.set_global_steps(3);
  CHECK(engine.global_steps() == 3);
  CHECK(engine.micro_steps() == 3 * kGas);
  CHECK(!engine.is_gradient_accumulation_boundary());
  engine.step();  // one micro-batch into step 4 (no update: not the boundary)
  CHECK_THROWS_WITH(engine.save_checkpoint("/tmp/x", "t"),
                    Contains("call it at an accumulation boundary (after the step() that updated); "
                             "1 of 4 micro-batches of this step have run"));
}

// The config's sections reach the model: bf16 holds 16-bit parameters with
// fp32 masters; activation_checkpointing wraps the first number_checkpoints
// blocks (nn/checkpointed_block.h).
TEST_CASE("engine: bf16 and activation_checkpointing from the config", "[mpi][engine]") {
  Communicator world = Communicator::world();
  TokenData data = text();
  auto run = [&](const std::string& extra) {
    auto init = initialize(std::make_shared<GPT>(tiny(0.0), 1),
                           parse_ds_config(config_json(1, extra), world.size()), world);
    int64_t w = 0;
    double loss = init.engine.train_batch(
        [&] { return data.train_batch(w++, world.rank(), world.size(), B, T); });
    return std::tuple{init.engine, loss};
  };
  auto [bf16, bf16_loss] = run(R"(, "bf16": {"enabled": true})");
  CHECK(std::isfinite(bf16_loss));
  for (const Tensor& p : bf16.gpt().parameters()) CHECK(p.dtype() == DType::BF16);
  for (const Tensor& m : bf16.optimizer().params()) CHECK(m.dtype() == DType::F32);
  auto [ckpt, ckpt_loss] = run(R"(, "activation_checkpointing": {"number_checkpoints": 1})");
  CHECK(num_checkpointed_blocks(ckpt.gpt()) == 1);
  auto [plain, plain_loss] = run("");
  CHECK(num_checkpointed_blocks(plain.gpt()) == 0);
  CHECK(ckpt_loss == plain_loss);  // recomputing changes no number
  CHECK(weights(ckpt.gpt()) == weights(plain.gpt()));
}

// DeepSpeed's save_checkpoint/load_checkpoint on the engine: a fresh engine
// (other initial weights) loads the step counters, the LR schedule's place,
// the weights, and under fp16 the loss scaler's state, then trains on
// exactly as the saving engine does.
TEST_CASE("engine: save_checkpoint / load_checkpoint resume the run", "[mpi][engine]") {
  Communicator world = Communicator::world();
  TokenData data = text();
  const std::string dir = str_cat("/tmp/minispeed_engine_ckpt_", world.size());
  if (world.rank() == 0) std::filesystem::remove_all(dir);
  world.barrier();
  const std::string extra =
      R"(, "fp16": {"enabled": true, "initial_scale_power": 24, "loss_scale_window": 2},
         "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 5}})";
  auto make = [&](uint64_t seed) {
    return initialize(std::make_shared<GPT>(tiny(0.0), seed),
                      parse_ds_config(config_json(1, extra), world.size()), world)
        .engine;
  };
  auto batch = [&](Engine& e) {
    int64_t w = e.global_steps() * kGas;
    return e.train_batch([&] { return data.train_batch(w++, world.rank(), world.size(), B, T); });
  };
  Engine a = make(1);
  for (int i = 0; i < 4; ++i) batch(a);
  const std::string saved = a.save_checkpoint(dir, "", {{"note", "engine test"}});
  CHECK(saved == dir + "/global_step4");
  Engine b = make(2);
  CHECK(weights(b.gpt()) != weights(a.gpt()));
  CheckpointMeta meta = b.load_checkpoint(dir, "latest");
  CHECK(meta.step == 4);
  CHECK(meta.config.at("note") == "engine test");
  CHECK(b.global_steps() == 4);
  CHECK(b.get_lr() == a.get_lr());
  CHECK(b.zero_optimizer().skipped_steps() == a.zero_optimizer().skipped_steps());
  REQUIRE(b.zero_optimizer().loss_scaler() != nullptr);
  CHECK(b.zero_optimizer().loss_scaler()->state() == a.zero_optimizer().loss_scaler()->state());
  CHECK(weights(b.gpt()) == weights(a.gpt()));
  for (int i = 0; i < 3; ++i) CHECK(batch(b) == batch(a));
  CHECK(weights(b.gpt()) == weights(a.gpt()));
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove_all(dir);
}
