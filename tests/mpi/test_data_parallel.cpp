// DataParallel (parallel/dp/data_parallel.h) on its own: the broadcast, the
// buckets, overlap during backward, no-sync accumulation, and training that
// matches one process with the global batch (SGD and AdamW, with gradient
// accumulation and clipping). ZeroOptimizer's stage 0 is tested in test_zero.cpp.
//
// One-process equivalence: at step s, micro-step m, rank r of D reads
// train_batch(s·A + m, r, D, B, T); the reference reads
// train_batch(s·A + m, 0, 1, D·B, T), the same rows (nn/data.h).
#include <algorithm>
#include <cmath>

#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/dp/data_parallel.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

constexpr int64_t B = 2, T = 16;

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 32, c.block_size = T;
  return c;
}

TokenData text() {
  return TokenData::load("data/tinyshakespeare.txt");
}

std::unique_ptr<Optimizer> make_opt(const std::string& opt, std::vector<Tensor> ps) {
  if (opt == "sgd") return std::make_unique<SGD>(std::move(ps), 0.1, 0.9, 0.01);
  return std::make_unique<AdamW>(std::move(ps), 1e-3, 0.9, 0.95, 1e-8, 0.1);
}

struct Result {
  std::vector<double> losses;
  std::vector<Tensor> params;
  std::vector<std::vector<bool>> noise;  // reference: elements with round-off gradients, any step
  size_t noise_per_step = 0;             // the most of them in one step
};

// world == nullptr: one process with batch D·B.
Result train(const std::string& opt_name, int accum, double clip, Communicator* world, int D) {
  TokenData data = text();
  const int r = world ? world->rank() : 0;
  GPT model(tiny(), 1 + r);  // replicas start different: the broadcast must fix that
  std::unique_ptr<DataParallel> ddp;
  if (world) ddp = std::make_unique<DataParallel>(model.parameters(), *world, 4 << 10);
  auto opt = make_opt(opt_name, model.parameters());
  std::vector<Tensor> params = model.parameters();
  Result res;
  res.noise.resize(params.size());
  for (int step = 0; step < 5; ++step) {
    double loss_sum = 0;
    for (int m = 0; m < accum; ++m) {
      if (ddp) ddp->set_gradient_sync(m == accum - 1);
      Batch b = world ? data.train_batch(step * accum + m, r, D, B, T)
                      : data.train_batch(step * accum + m, 0, 1, D * B, T);
      Tensor loss = mul(model.loss(b.x, b.y), 1.0 / accum);
      loss.backward();
      loss_sum += loss.item();
    }
    if (ddp) ddp->finish_gradient_sync();
    size_t tiny = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      std::vector<double> g = params[i].grad().to_vector();
      double gmax = 0;
      for (double x : g) gmax = std::max(gmax, std::fabs(x));
      res.noise[i].resize(g.size(), false);
      for (size_t k = 0; k < g.size(); ++k) {
        bool round_off = std::fabs(g[k]) < 1e-5 * gmax;
        tiny += round_off;
        res.noise[i][k] = res.noise[i][k] || round_off;
      }
    }
    res.noise_per_step = std::max(res.noise_per_step, tiny);
    clip_grad_norm(params, clip);  // grads are identical on every rank: no communication
    opt->step();
    if (ddp)
      ddp->zero_grad();
    else
      opt->zero_grad();
    if (world) {
      Tensor l = from_vector(std::vector<double>{loss_sum}, {1}, DType::F64);
      world->all_reduce(l, ReduceOp::Avg);
      loss_sum = l.item();
    }
    res.losses.push_back(loss_sum);
  }
  for (const Tensor& p : params) res.params.push_back(clone(p));
  return res;
}

}  // namespace

TEST_CASE("bucket_by_size: reverse order, closes at the cap", "[mpi][ddp]") {
  std::vector<Tensor> ps = {zeros({100}), zeros({10}), zeros({300}), zeros({5}), zeros({5})};
  // 400 bytes cap: [4, 3, 2] (40 + 1200 >= 400 closes), [1, 0].
  auto buckets = bucket_by_size(ps, 400);
  REQUIRE(buckets.size() == 2);
  CHECK(buckets[0] == std::vector<int>{4, 3, 2});
  CHECK(buckets[1] == std::vector<int>{1, 0});
  CHECK(bucket_by_size(ps, 1 << 20).size() == 1);
  CHECK(bucket_by_size(ps, 1).size() == 5);  // one parameter per bucket
}

TEST_CASE("DDP: broadcast, buckets launched during backward, no_sync", "[mpi][ddp]") {
  Communicator world = Communicator::world();
  const int D = world.size(), r = world.rank();
  TokenData data = text();
  GPT model(tiny(), 1 + r);
  DataParallel ddp(model.parameters(), world, 4 << 10);
  // Every replica now holds rank 0's initialization (seed 1).
  GPT rank0(tiny(), 1);
  bool same_start = true;
  for (auto& [name, p] : model.named_parameters())
    same_start = same_start && allclose(p, rank0.parameter(name), 0, 0);
  const size_t nbuckets = ddp.buckets().size();

  // A no_sync backward: local gradients only, nothing launched.
  ddp.set_gradient_sync(false);
  Batch b0 = data.train_batch(0, r, D, B, T);
  model.loss(b0.x, b0.y).backward();
  Tensor local = clone(model.parameter("ln_f.weight").grad());
  GPT fresh(tiny(), 1);
  fresh.loss(b0.x, b0.y).backward();
  bool no_sync_is_local = allclose(local, fresh.parameter("ln_f.weight").grad(), 1e-6, 1e-7);

  // The synchronising backward: every bucket starts while backward still runs.
  ddp.set_gradient_sync(true);
  Batch b1 = data.train_batch(1, r, D, B, T);
  model.loss(b1.x, b1.y).backward();
  ddp.finish_gradient_sync();
  const int overlapped = ddp.buckets_launched_during_backward();
  // After the average, every rank holds the same gradient.
  Tensor g = clone(model.parameter("h.0.attn.c_attn.weight").grad());
  Tensor g0 = clone(g);
  world.broadcast(g0, 0);

  CHECK(same_start);
  CHECK(nbuckets > 2);
  CHECK(no_sync_is_local);
  CHECK(overlapped == static_cast<int>(nbuckets));
  CHECK(allclose(g, g0, 0, 0));
}

TEST_CASE("DDP trains like one process with the global batch", "[mpi][ddp]") {
  Communicator world = Communicator::world();
  const int D = world.size();
  struct Case {
    std::string opt;
    int accum;
    double clip;
  };
  for (Case c :
       {Case{"sgd", 1, 0}, Case{"adamw", 1, 0}, Case{"sgd", 2, 0.5}, Case{"adamw", 3, 0.5}}) {
    Result got = train(c.opt, c.accum, c.clip, &world, D);
    Result want = train(c.opt, c.accum, c.clip, nullptr, D);
    INFO(c.opt << " accum " << c.accum << " clip " << c.clip);
    for (size_t s = 0; s < want.losses.size(); ++s)
      CHECK(std::fabs(got.losses[s] - want.losses[s]) <= 1e-5 * want.losses[s]);
    size_t total = 0;
    for (size_t i = 0; i < want.params.size(); ++i) {
      std::vector<double> a = got.params[i].to_vector(), b = want.params[i].to_vector();
      double scale = 0, worst = 0;
      for (double x : b) scale = std::max(scale, std::fabs(x));
      for (size_t k = 0; k < a.size(); ++k) {
        // AdamW: round-off gradients step ±lr with a noise-set sign (see test_zero.cpp).
        if (c.opt == "adamw" && want.noise[i][k]) {
          CHECK(std::fabs(a[k] - b[k]) <= 2 * 5 * 1e-3);
          continue;
        }
        worst = std::max(worst, std::fabs(a[k] - b[k]) / scale);
      }
      total += a.size();
      INFO("parameter " << i << ": worst relative error " << worst);
      CHECK(worst <= 1e-5);
    }
    if (c.opt == "adamw") CHECK(want.noise_per_step < total / 100);  // the exemption stays rare
  }
}
