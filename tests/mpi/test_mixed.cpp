// Mixed precision in ZeroOptimizer (parallel/zero/mixed_precision.h), stages 0-3:
//   - the optimizer's tensors are fp32 masters; the model's parameters are
//     the masters rounded to bf16, and they keep updates smaller than a bf16 ulp;
//   - memory: 2Ψ params + 2Ψ grads + 12Ψ optimizer, divided by D per stage;
//   - fp16: ONE rank alone sees an inf and every rank skips the step —
//     parameters, masters and AdamW's state untouched, the scale halved — and
//     at min_loss_scale DeepSpeed's error on every rank;
//   - D ranks in bf16 train like one bf16 process with D times the batch,
//     within a bf16 tolerance (stated below).
// Every rank runs every collective before any CHECK.
#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/zero/stage.h"
#include "parallel/zero/zero_optimizer.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

constexpr int64_t B = 2, T = 15;

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 30, c.block_size = T;  // odd sizes: padding
  return c;
}

TokenData text() {
  return TokenData::load("data/tinyshakespeare.txt");
}

ZeroOptions options(int stage, DType dtype) {
  ZeroOptions o;
  o.stage = stage;
  o.bucket_bytes = 4 << 10;  // several stage-2 buckets
  o.precision.dtype = dtype;
  o.precision.fp16.hysteresis = 1;  // the first overflow halves the scale
  return o;
}

auto adamw(double lr) {
  return [lr](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
    return std::make_unique<AdamW>(std::move(ps), lr, 0.9, 0.95, 1e-8, 0.1);
  };
}

// One optimizer step of rank r's share of batch `step`.
double train_step(GPT& model, ZeroOptimizer& engine, const TokenData& data, int step, int rank,
                  int D, double lr) {
  engine.set_gradient_sync(true);
  Batch b = data.train_batch(step, rank, D, B, T);
  Tensor loss = model.loss(b.x, b.y);
  engine.scale_loss(loss).backward();
  engine.step(lr, 1.0);
  return loss.item();
}

std::vector<std::vector<double>> values(const std::vector<Tensor>& ts) {
  std::vector<std::vector<double>> out;
  for (const Tensor& t : ts) out.push_back(t.to_vector());
  return out;
}

}  // namespace

TEST_CASE("mixed precision: fp32 masters in the optimizer, bf16 model = rounded masters",
          "[mpi][mixed]") {
  Communicator world = Communicator::world();
  const TokenData data = text();
  const int D = world.size(), r = world.rank();
  for (int stage = 0; stage <= 3; ++stage) {
    INFO("stage " << stage);
    GPT model(tiny(), 1);
    // lr 1e-5: AdamW moves each element by about 1e-5, far below the bf16 ulp
    // of a weight of size 0.02 (1.2e-4): only the masters can remember it.
    ZeroOptimizer engine(model, world, options(stage, DType::BF16), adamw(1e-5));
    const std::vector<Tensor>& masters = engine.optimizer().params();
    std::vector<std::vector<double>> before = values(masters);
    for (int step = 0; step < 2; ++step) train_step(model, engine, data, step, r, D, 1e-5);
    const MemoryReport mem = engine.memory();  // between steps (before any gather)
    // Every rank's full model vs every rank's masters: each rank checks its own slices.
    size_t changed = 0, total = 0;
    bool all_f32 = true;
    for (size_t i = 0; i < masters.size(); ++i) {
      all_f32 = all_f32 && masters[i].dtype() == DType::F32;
      const std::vector<double> now = masters[i].to_vector();
      for (size_t k = 0; k < now.size(); ++k) changed += now[k] != before[i][k], ++total;
    }
    CHECK(all_f32);
    for (const Tensor& p : model.parameters()) CHECK(p.dtype() == DType::BF16);
    // Nearly every master moved (padding and exactly-zero gradients may not).
    CHECK(changed > total * 9 / 10);
    // The 16-bit parameters are the masters rounded: check through the
    // stage's trainable tensors (this rank's slices, or all at stage 0).
    const std::vector<Tensor> slices = engine.stage_impl().trainable();
    REQUIRE(slices.size() == masters.size());
    for (size_t i = 0; i < masters.size(); ++i)
      CHECK(slices[i].to_vector() == to(masters[i], DType::BF16).to_vector());
    // The ZeRO paper's mixed-precision accounting, measured: 2 + 2 + 12 bytes
    // per parameter, each stage dividing one more term by D (padding aside).
    const double psi = static_cast<double>(engine.num_parameters());  // stage 3 released some
    CHECK(mem.predicted.param_bytes == 2);
    CHECK(mem.predicted.grad_bytes == 2);
    CHECK(mem.predicted.optimizer_bytes_per_param == 12);
    const double opt_share = stage >= 1 ? 12 * psi / D : 12 * psi;
    CHECK(std::fabs(double(mem.optimizer) - opt_share) <= 12.0 * D * 8);
    if (stage <= 1) CHECK(std::fabs(double(mem.grads) - 2 * psi) <= 2.0 * D * 8);
    if (stage == 2) CHECK(std::fabs(double(mem.grads) - 2 * psi / D) <= 2.0 * D * 8);
    if (stage <= 2) CHECK(std::fabs(double(mem.params) - 2 * psi) <= 2.0 * D * 8);
    CHECK(mem.total() == mem.layout);  // measured = the formula with padded sizes
  }
}

TEST_CASE("mixed precision: fp32 gradient communication keeps 4-byte gradients",
          "[mpi][mixed]") {
  Communicator world = Communicator::world();
  GPT model(tiny(), 1);
  ZeroOptions o = options(2, DType::BF16);
  o.precision.communication_dtype = DType::F32;
  ZeroOptimizer engine(model, world, o, adamw(1e-3));
  train_step(model, engine, text(), 0, world.rank(), world.size(), 1e-3);
  const MemoryReport mem = engine.memory();
  CHECK(mem.predicted.grad_bytes == 4);
  CHECK(mem.total() == mem.layout);
  for (const Tensor& s : engine.stage_impl().trainable()) CHECK(s.grad().dtype() == DType::F32);
}

TEST_CASE("fp16: one rank alone sees an inf, every rank skips and the scale halves",
          "[mpi][mixed]") {
  Communicator world = Communicator::world();
  const TokenData data = text();
  const int D = world.size(), r = world.rank();
  for (int stage = 0; stage <= 3; ++stage) {
    INFO("stage " << stage);
    GPT model(tiny(), 1);
    ZeroOptions o = options(stage, DType::F16);
    o.precision.fp16.initial_scale_power = 8;
    ZeroOptimizer engine(model, world, o, adamw(1e-3));
    train_step(model, engine, data, 0, r, D, 1e-3);  // a clean step: AdamW has state now
    REQUIRE_FALSE(engine.skipped());
    auto& opt = dynamic_cast<AdamW&>(engine.optimizer());
    const int64_t adam_steps = opt.steps_taken();
    const auto masters = values(engine.optimizer().params());
    const auto params = values(engine.stage_impl().trainable());
    const double scale = engine.loss_scale();
    // Step 2: after the dp reduction, the LAST rank alone plants an inf in
    // its own gradient (its slice at stages 1-3).
    engine.set_gradient_sync(true);
    Batch b = data.train_batch(1, r, D, B, T);
    engine.scale_loss(model.loss(b.x, b.y)).backward();
    engine.reduce_gradients();
    if (r == D - 1) {
      NoGradGuard no_grad;
      Tensor g = engine.stage_impl().trainable()[0].grad();
      Tensor first = narrow(reshape(g, {-1}), 0, 0, 1);
      fill_(first, std::numeric_limits<double>::infinity());
    }
    const double norm = engine.step(1e-3, 1.0);
    CHECK(engine.skipped());  // on every rank, not only the one that saw it
    CHECK(std::isnan(norm));
    CHECK(engine.skipped_steps() == 1);
    CHECK(engine.loss_scale() == scale / 2);   // hysteresis 1: halved at once
    CHECK(opt.steps_taken() == adam_steps);    // AdamW's step() never ran: m, v, t untouched
    CHECK(values(engine.optimizer().params()) == masters);
    CHECK(values(engine.stage_impl().trainable()) == params);
    // And the next clean step trains again, from the same state.
    train_step(model, engine, data, 2, r, D, 1e-3);
    CHECK_FALSE(engine.skipped());
    CHECK(opt.steps_taken() == adam_steps + 1);
    CHECK(engine.skipped_steps() == 1);  // counted once, not reset by a clean step
    engine.set_skipped_steps(4);         // what a checkpoint resume restores
    CHECK(engine.skipped_steps() == 4);
  }
}

// The unscale rule minispeed chose (optim/loss_scaler.h): divide by the scale
// the backward used, as PyTorch's GradScaler does. DeepSpeed's ZeRO-1/2 step
// divides by the scale AFTER _update_scale, so on a doubling step its update
// would be half of this one. Two engines from the same weights take the same
// clean step at scale 2^8, one with window 1 (the scale doubles on this step),
// one with the default window (it does not): the weights must come out equal.
TEST_CASE("fp16: a step that doubles the scale unscales by the scale backward used",
          "[mpi][mixed]") {
  Communicator world = Communicator::world();
  const TokenData data = text();
  const int D = world.size(), r = world.rank();
  std::vector<std::vector<double>> after[2];
  double norms[2] = {0, 0}, scales[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    GPT model(tiny(), 1);
    ZeroOptions o = options(1, DType::F16);
    o.precision.fp16.initial_scale_power = 8;
    o.precision.fp16.loss_scale_window = k == 0 ? 1 : 1000;
    ZeroOptimizer engine(model, world, o, [](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
      return std::make_unique<SGD>(std::move(ps), 0.5);  // SGD: the update is lr · gradient
    });
    engine.set_gradient_sync(true);
    Batch b = data.train_batch(0, r, D, B, T);
    engine.scale_loss(model.loss(b.x, b.y)).backward();
    norms[k] = engine.step(0.5, 0);  // no clipping
    REQUIRE_FALSE(engine.skipped());
    scales[k] = engine.loss_scale();
    after[k] = values(engine.optimizer().params());
  }
  CHECK(scales[0] == 512);  // window 1: doubled on this step (the 1st clean update)
  CHECK(scales[1] == 256);
  CHECK(norms[0] == norms[1]);
  CHECK(after[0] == after[1]);
}

TEST_CASE("fp16: an overflow at min_loss_scale is DeepSpeed's error, on every rank",
          "[mpi][mixed]") {
  Communicator world = Communicator::world();
  const int D = world.size(), r = world.rank();
  GPT model(tiny(), 1);
  ZeroOptions o = options(1, DType::F16);
  o.precision.fp16.initial_scale_power = 0;  // scale 1 = min_loss_scale
  ZeroOptimizer engine(model, world, o, adamw(1e-3));
  Batch b = text().train_batch(0, r, D, B, T);
  engine.scale_loss(model.loss(b.x, b.y)).backward();
  engine.reduce_gradients();
  if (r == 0) {
    NoGradGuard no_grad;
    Tensor g = engine.stage_impl().trainable()[0].grad();
    Tensor first = narrow(reshape(g, {-1}), 0, 0, 1);
    fill_(first, std::numeric_limits<double>::quiet_NaN());
  }
  CHECK_THROWS_WITH(engine.step(1e-3, 1.0),
                    Catch::Contains("Current loss scale already at minimum"));
}

// Tolerance, measured and explained: D ranks and one process compute the same
// f32 math on the same bf16 values up to the order of summation, but each
// rank's gradient is rounded to bf16 BEFORE the average (one process rounds
// the whole batch's gradient once), so the averaged gradients differ by about
// a bf16 ulp (2^-8 relative). AdamW turns that into different updates of at
// most 2·lr per step, and the masters' rounding to bf16 can then land one ulp
// apart. After 3 steps at lr 1e-3: losses within 2e-3 (they are ~5.5),
// parameters within 3·2·lr + 1 bf16 ulp of the tensor's largest element.
TEST_CASE("bf16: ZeRO 0-3 on D ranks train like one bf16 process", "[mpi][mixed]") {
  Communicator world = Communicator::world();
  const TokenData data = text();
  const int D = world.size(), r = world.rank();
  const int steps = 3;
  const double lr = 1e-3;
  // One process, batch D·B: every rank computes it on a communicator of its own.
  Communicator alone = world.split(r, 0);
  GPT ref(tiny(), 1);
  std::vector<double> ref_losses;
  {
    ZeroOptimizer engine(ref, alone, options(0, DType::BF16), adamw(lr));
    for (int step = 0; step < steps; ++step) {
      engine.set_gradient_sync(true);
      Batch b = data.train_batch(step, 0, 1, D * B, T);
      Tensor loss = ref.loss(b.x, b.y);
      loss.backward();
      engine.step(lr, 1.0);
      ref_losses.push_back(loss.item());
    }
  }
  for (int stage = 0; stage <= 3; ++stage) {
    INFO("stage " << stage);
    GPT model(tiny(), 1 + r);  // rank 0's weights must be broadcast
    ZeroOptimizer engine(model, world, options(stage, DType::BF16), adamw(lr));
    std::vector<double> losses;
    for (int step = 0; step < steps; ++step) {
      double l = train_step(model, engine, data, step, r, D, lr);
      Tensor t = from_vector(std::vector<double>{l}, {1}, DType::F64);
      world.all_reduce(t, ReduceOp::Avg);
      losses.push_back(t.item());
    }
    engine.gather_full_parameters();
    for (int step = 0; step < steps; ++step) {
      INFO("step " << step << ": " << losses[step] << " vs one process " << ref_losses[step]);
      CHECK(std::fabs(losses[step] - ref_losses[step]) <= 2e-3);
    }
    const auto got = model.named_parameters(), want = ref.named_parameters();
    for (size_t i = 0; i < got.size(); ++i) {
      INFO(got[i].first);
      const std::vector<double> a = got[i].second.to_vector(), b = want[i].second.to_vector();
      double top = 0, worst = 0;
      for (double x : b) top = std::max(top, std::fabs(x));
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::fabs(a[k] - b[k]));
      INFO("worst " << worst << ", largest element " << top);
      CHECK(worst <= steps * 2 * lr + top / 128);
    }
  }
}
