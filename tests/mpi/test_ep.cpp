// Expert parallelism (parallel/ep/): the groups against DeepSpeed's own
// example, the differentiable all-to-all, the ledger's bytes per MoE layer
// against the formula with the gate's exact capacity, an expert that gets no
// token (it must end the step identically on every rank, equal to --ep 1),
// and the refusals. The end-to-end equivalence runs are in
// scripts/test-train-equivalence.sh.
//
// Rule (docs/architecture.md, Testing): only CHECK between collectives.
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "nn/moe.h"
#include "parallel/comm/all_to_all_op.h"
#include "parallel/engine/engine.h"
#include "parallel/ep/ep_groups.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_traffic.h"
#include "tensor/factory.h"
#include "tests/catch_compat.h"

using namespace ms;
using Catch::Contains;

namespace {

constexpr int64_t B = 2, T = 16;

GPTConfig moe_model(int64_t experts, int64_t top_k) {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 32, c.block_size = T, c.dropout = 0;
  c.moe.experts = experts, c.moe.every = 1, c.moe.top_k = top_k;
  return c;
}

std::string ds_json(int64_t experts, int64_t ep, int stage = 0, const std::string& extra = "") {
  return str_cat(R"({"train_micro_batch_size_per_gpu": )", B,
                 R"(, "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "weight_decay": 0.1}},
                     "gradient_clipping": 1.0, "zero_optimization": {"stage": )",
                 stage, R"(}, "moe": {"num_experts": )", experts, R"(, "expert_interval": 1,
                     "ep_size": )",
                 ep, "}", extra, "}");
}

std::vector<std::vector<double>> weights(GPT& g) {
  std::vector<std::vector<double>> w;
  for (const Tensor& p : g.parameters()) w.push_back(p.to_vector());
  return w;
}

double max_diff(const std::vector<std::vector<double>>& a,
                const std::vector<std::vector<double>>& b) {
  if (a.size() != b.size()) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size()) return INFINITY;
    for (size_t j = 0; j < a[i].size(); ++j) d = std::max(d, std::abs(a[i][j] - b[i][j]));
  }
  return d;
}

}  // namespace

TEST_CASE("ep: the groups are DeepSpeed's (consecutive dp ranks, then strided)", "[mpi][ep]") {
  // DeepSpeed's tests/unit/utils/test_get_expert_parallel_ranks.py: dp group
  // [0,2,...,14] with ep 4 gives ep [0,2,4,6] [8,10,12,14] and expert-dp
  // [0,8] [2,10] [4,12] [6,14]; in dp ranks, ep [0..3] [4..7], expert-dp
  // [0 4] [1 5] [2 6] [3 7].
  EpLayout l(8, 4);
  CHECK(l.ep_groups() == std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
  CHECK(l.expert_dp_groups() == std::vector<std::vector<int>>{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  CHECK(l.describe({0, 2, 4, 6, 8, 10, 12, 14}) ==
        "  ep groups [0 2 4 6] [8 10 12 14] (experts split, dispatch/combine all-to-all)\n"
        "  expert-dp groups [0 8] [2 10] [4 12] [6 14] (same experts: expert gradients "
        "averaged)\n");
  CHECK_THROWS_WITH(EpLayout(6, 4), Contains("--ep 4 does not divide the data-parallel size 6"));

  Communicator world = Communicator::world();
  EpGroups g(world, 2 <= world.size() ? 2 : 1);
  CHECK(g.ep.size() == 2);
  CHECK(g.ep.rank() == world.rank() % 2);
  CHECK(g.expert_dp.size() == world.size() / 2);
  CHECK(g.expert_dp.rank() == world.rank() / 2);
}

TEST_CASE("ep: the all-to-all op sends block j to rank j, and its gradient back", "[mpi][ep]") {
  Communicator world = Communicator::world();
  const int P = world.size(), r = world.rank();
  // x (P, 3): row j = 10·r + j, for rank j. y row i came from rank i: 10·i + r.
  std::vector<double> v;
  for (int j = 0; j < P; ++j)
    for (int c = 0; c < 3; ++c) v.push_back(10.0 * r + j + 0.1 * c);
  Tensor x = from_vector(v, {P, 3}, DType::F64);
  x.set_requires_grad(true);
  Tensor y = differentiable_all_to_all(x, world);
  // loss = Σ y · w with w[i] = 100·i + r: dL/dx on rank r, row j = the w row
  // rank j used for our block: 100·r + j.
  std::vector<double> w;
  for (int i = 0; i < P; ++i)
    for (int c = 0; c < 3; ++c) w.push_back(100.0 * i + r);
  sum(mul(y, from_vector(w, {P, 3}, DType::F64))).backward();
  const std::vector<double> got = y.to_vector(), grad = x.grad().to_vector();
  for (int i = 0; i < P; ++i)
    for (int c = 0; c < 3; ++c) {
      CHECK(got[size_t(i * 3 + c)] == 10.0 * i + r + 0.1 * c);
      CHECK(grad[size_t(i * 3 + c)] == 100.0 * r + i);
    }
}

TEST_CASE("ep: the ledger's all-to-all bytes per MoE layer equal the formula", "[mpi][ep]") {
  Communicator world = Communicator::world();
  const int P = world.size();
  for (const bool drop : {true, false}) {
    GPTConfig cfg = moe_model(2 * P, 2);
    cfg.moe.drop_tokens = drop;
    cfg.moe.capacity_factor = 1.25;
    GPT model(cfg, 3);
    EpGroups groups(world, P);
    install_expert_parallel(model, groups);
    TokenData data = TokenData::load("data/tinyshakespeare.txt");
    Batch b = data.train_batch(0, world.rank(), P, B, T);
    const Traffic before = groups.ep.traffic();
    model.loss(b.x, b.y).backward();
    const OpTraffic a2a = (groups.ep.traffic() - before)[CommOp::AllToAll];
    int64_t expected = 0, capacity_sum = 0;
    for (Module* m : model.modules())
      if (auto* moe = dynamic_cast<MoE*>(m)) {
        const int64_t cap = moe->last_routing().capacity;
        capacity_sum += cap;
        expected += ep_layer_bytes(cfg.moe.experts, cap, cfg.n_embd, 4, P);
      }
    INFO("drop " << drop << ", capacities summed " << capacity_sum);
    CHECK(a2a.calls == 4 * cfg.n_layer);
    CHECK(a2a.sent == expected);
    // Dropping: the gate's exact capacity, ceil(k·tokens/E·F) = ceil(2·32/(2P)·1.25).
    if (drop)
      CHECK(capacity_sum ==
            cfg.n_layer * static_cast<int64_t>(std::ceil(2.0 * B * T / (2 * P) * 1.25)));
  }
}

TEST_CASE("ep: an expert that receives no token ends the step identically on every rank",
          "[mpi][ep]") {
  Communicator world = Communicator::world();
  const int D = world.size();
  // A zero router gives equal gates; the tie goes to expert 0 (the first
  // maximum, as torch.argmax), so with top-1 experts 1..3 get no token at all
  // in the first step — the whole of ep rank 1's experts at ep 2.
  auto run = [&](int64_t ep, int steps, std::vector<int64_t>* first_kept) {
    auto model = std::make_shared<GPT>(moe_model(4, 1), 11);
    {
      NoGradGuard no_grad;
      for (auto& [name, p] : model->named_parameters())
        if (name.find("router") != std::string::npos) {
          Tensor t = p;
          copy_(t, zeros(p.shape()));
        }
    }
    DsConfig c = parse_ds_config(ds_json(4, ep, D > 2 ? 1 : 0), D);
    auto [engine, optimizer, scheduler] = initialize(model, c, world);
    TokenData data = TokenData::load("data/tinyshakespeare.txt");
    for (int s = 0; s < steps; ++s) {
      Batch b = data.train_batch(s, world.rank(), D, B, T);
      Tensor loss = engine.forward(b.x, b.y);
      if (s == 0)
        for (Module* m : engine.gpt().modules())
          if (auto* moe = dynamic_cast<MoE*>(m)) {
            std::vector<double> k = moe->last_routing().kept.to_vector();
            for (size_t e = 0; e < k.size(); ++e) (*first_kept)[e] += static_cast<int64_t>(k[e]);
          }
      engine.backward(loss);
      engine.step();
    }
    return engine;
  };
  std::vector<int64_t> kept_ep(4, 0), kept_1(4, 0);
  Engine ep = run(2, 2, &kept_ep);
  // My experts on every rank of my expert-dp group: the same values (rank 0's
  // broadcast against mine).
  std::vector<std::vector<double>> mine, theirs;
  const std::vector<bool> local = expert_params(ep.gpt(), 2, ep.ep()->ep.rank()).local;
  const std::vector<Tensor> ps = ep.gpt().parameters();
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!local[i]) continue;
    Tensor copy = clone(detach(ps[i]));
    mine.push_back(copy.to_vector());
    ep.ep()->expert_dp.broadcast(copy, 0);
    theirs.push_back(copy.to_vector());
  }
  const auto ep_weights = weights(*ep.gather_model());
  Engine one = run(1, 2, &kept_1);
  const auto ref_weights = weights(*one.gather_model());
  // Every rank ends with rank 0's whole model.
  std::vector<double> flat;
  for (const auto& w : ep_weights) flat.insert(flat.end(), w.begin(), w.end());
  Tensor all = from_vector(flat, {int64_t(flat.size())}, DType::F64), root = clone(all);
  world.broadcast(root, 0);

  CHECK(kept_ep[0] > 0);
  CHECK(kept_ep[1] == 0);
  CHECK(kept_ep[2] == 0);
  CHECK(kept_ep[3] == 0);
  CHECK(kept_ep == kept_1);
  CHECK(max_diff(mine, theirs) == 0);
  CHECK(max_diff({all.to_vector()}, {root.to_vector()}) == 0);
  CHECK(max_diff(ep_weights, ref_weights) < 1e-5);
}

TEST_CASE("ep: bad layouts are refused before any collective, naming the key", "[mpi][ep]") {
  Communicator world = Communicator::world();
  const int D = world.size();
  auto model = [](int64_t E) { return std::make_shared<GPT>(moe_model(E, 1), 1); };
  CHECK_THROWS_WITH(initialize(model(3), parse_ds_config(ds_json(3, 2), D), world),
                    Contains("moe.ep_size 2 does not divide moe.num_experts 3"));
  CHECK_THROWS_WITH(initialize(model(8), parse_ds_config(ds_json(8, 2 * D), D), world),
                    Contains(str_cat("moe.ep_size ", 2 * D,
                                     " does not divide the data-parallel "
                                     "size ",
                                     D)));
  CHECK_THROWS_WITH(initialize(model(4), parse_ds_config(ds_json(4, 2, 3), D), world),
                    Contains("ZeRO-3 with MoE is refused"));
  CHECK_THROWS_WITH(initialize(std::make_shared<GPT>(moe_model(0, 1), 1),
                               parse_ds_config(ds_json(0, 2), D), world),
                    Contains("needs a mixture of experts"));
}
