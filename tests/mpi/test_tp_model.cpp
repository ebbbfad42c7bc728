// TpGPT (parallel/tp/tp_gpt.h) and ZeroOptimizer over the dp group of a
// dp × tp mesh, against the serial GPT of the same seed:
//   - the cut model keeps the serial names and order, at shard shapes;
//   - its loss (dropout on: the Megatron rule gives the serial masks) and every
//     gathered gradient equal the serial model's, with and without SP;
//   - gather_serial() gives back the serial weights exactly;
//   - training with ZeRO 0-3 over dp (SGD, accumulation, clipping that acts)
//     follows one process with batch dp·B: losses, norms, final weights; a
//     1-rank dp group (tp = world) issues no collective (ledger: 0 calls).
// Only CHECK after collectives, so a failing rank never strands the others.
#include <map>

#include "nn/data.h"
#include "optim/optimizer.h"
#include "parallel/mesh.h"
#include "parallel/tp/sequence_parallel.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/zero_optimizer.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 8;

GPTConfig tiny(double dropout = 0) {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = 16, c.block_size = T, c.dropout = dropout;
  return c;
}

TokenData text() {
  return TokenData::load("data/tinyshakespeare.txt");
}

// Relative to the reference tensor's largest element (as test_zero.cpp).
double rel_error(const Tensor& got, const Tensor& want) {
  const double scale = max_diff(want, zeros_like(want));
  return max_diff(got, want) / (scale > 0 ? scale : 1);
}

}  // namespace

TEST_CASE("TpGPT: serial names and order at shard shapes", "[mpi][tp][tp_model]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    GPT serial(tiny(), 42);
    TpGPT m(std::make_shared<GPT>(tiny(), 42), tp, false);
    const auto want = serial.named_parameters(), got = m.named_parameters();
    REQUIRE(got.size() == want.size());
    const std::vector<bool> replicated = m.replicated_mask();
    const int64_t C = 16;
    std::map<std::string, Shape> expect{{"wte.weight", {256 / t, C}},
                                        {"h.0.attn.c_attn.weight", {C, 3 * C / t}},
                                        {"h.0.attn.c_attn.bias", {3 * C / t}},
                                        {"h.0.attn.c_proj.weight", {C / t, C}},
                                        {"h.0.attn.c_proj.bias", {C}},
                                        {"h.1.mlp.c_fc.weight", {C, 4 * C / t}},
                                        {"h.1.mlp.c_fc.bias", {4 * C / t}},
                                        {"h.1.mlp.c_proj.weight", {4 * C / t, C}},
                                        {"h.1.ln_2.weight", {C}},
                                        {"wpe.weight", {T, C}}};
    for (size_t i = 0; i < want.size(); ++i) {
      INFO("tp " << t << ": " << want[i].first);
      CHECK(got[i].first == want[i].first);
      CHECK(got[i].second.same(m.gpt().parameters()[i]));
      CHECK(replicated[i] == (tp_split_of(want[i].first) == TpSplit::Replicated));
      const Tensor shard =
          shard_param(want[i].second, tp_split_of(want[i].first), tp.rank(), t, 4, want[i].first);
      CHECK(max_diff(got[i].second, shard) == 0);
      if (expect.count(want[i].first)) CHECK(got[i].second.shape() == expect[want[i].first]);
    }
    // The serial weights back, bit for bit.
    std::shared_ptr<GPT> back = m.gather_serial();
    for (const auto& [name, p] : want) CHECK(max_diff(back->parameter(name), p) == 0);
  }
}

TEST_CASE("TpGPT: loss and gathered gradients equal the serial GPT's (dropout on)",
          "[mpi][tp][tp_model]") {
  Communicator world = Communicator::world();
  TokenData data = text();
  const Batch b = data.train_batch(0, 0, 1, B, T);
  GPT serial(tiny(0.1), 7);
  Tensor want = serial.loss(b.x, b.y);
  want.backward();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    for (bool sp : {false, true}) {
      INFO("tp " << t << ", sequence parallel " << sp);
      TpGPT m(std::make_shared<GPT>(tiny(0.1), 7), tp, sp);
      Tensor got = m.loss(b.x, b.y);
      got.backward();
      if (sp) {  // what ZeroOptimizer does after its dp reduction
        std::vector<Tensor> rep;
        const auto ps = m.gpt().parameters();
        for (size_t i = 0; i < ps.size(); ++i)
          if (m.replicated_mask()[i]) rep.push_back(ps[i]);
        allreduce_sequence_parallel_grads(rep, tp);
      }
      CHECK(std::fabs(got.item() - want.item()) < 1e-5);
      for (const auto& [name, p] : m.named_parameters()) {
        INFO(name);
        CHECK(rel_error(gather_param(p.grad(), tp_split_of(name), tp),
                        serial.parameter(name).grad()) <= 1e-5);
      }
    }
  }
}

namespace {

struct Run {
  std::vector<double> losses, norms;
  std::shared_ptr<GPT> weights;
  Traffic dp_traffic;  // what the dp group moved during the steps
};

constexpr int kSteps = 3, kAccum = 2;
constexpr double kClip = 0.5;  // below every step's norm here: clipping acts

std::unique_ptr<Optimizer> sgd(std::vector<Tensor> ps) {
  return std::make_unique<SGD>(std::move(ps), 0.1, 0.9, 0.01);
}

// One process, batch D·B.
Run reference(int D) {
  TokenData data = text();
  auto model = std::make_shared<GPT>(tiny(), 1);
  auto opt = sgd(model->parameters());
  Run run;
  for (int step = 0; step < kSteps; ++step) {
    double loss_sum = 0;
    for (int k = 0; k < kAccum; ++k) {
      Batch b = data.train_batch(step * kAccum + k, 0, 1, D * B, T);
      Tensor loss = mul(model->loss(b.x, b.y), 1.0 / kAccum);
      loss.backward();
      loss_sum += loss.item();
    }
    run.losses.push_back(loss_sum);
    run.norms.push_back(clip_grad_norm(model->parameters(), kClip));
    opt->step();
    opt->zero_grad();
  }
  run.weights = model;
  return run;
}

// The mesh's dp × tp: every replica reads its dp rank's rows, its tp ranks the same.
Run tensor_parallel(Mesh& mesh, int stage, bool sp) {
  TokenData data = text();
  TpGPT m(std::make_shared<GPT>(tiny(), 1), mesh.tp(), sp);
  ZeroOptimizer engine(m.gpt(), mesh.dp(),
                       {.stage = stage,
                        .bucket_bytes = 4 << 10,
                        .tp = ZeroTensorParallel{mesh.tp(), m.replicated_mask(), sp}},
                       sgd);
  Run run;
  const Traffic dp0 = mesh.dp().traffic();
  for (int step = 0; step < kSteps; ++step) {
    double loss_sum = 0;
    for (int k = 0; k < kAccum; ++k) {
      engine.set_gradient_sync(k == kAccum - 1);
      Batch b = data.train_batch(step * kAccum + k, mesh.dp_rank(), mesh.dp_size(), B, T);
      Tensor loss = mul(m.loss(b.x, b.y), 1.0 / kAccum);
      loss.backward();
      loss_sum += loss.item();
    }
    run.norms.push_back(engine.step(0.1, kClip));
    Tensor l = from_vector(std::vector<double>{loss_sum}, {1}, DType::F64);
    mesh.dp().all_reduce(l, ReduceOp::Avg);
    run.losses.push_back(l.item());
  }
  run.dp_traffic = mesh.dp().traffic() - dp0;
  engine.gather_full_parameters();
  run.weights = m.gather_serial();
  return run;
}

}  // namespace

TEST_CASE("tp × dp with ZeRO 0-3 (SGD, accumulation, clipping) trains like one process",
          "[mpi][tp][tp_model]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Mesh mesh(world, world.size() / t, t, 1);
    const Run want = reference(mesh.dp_size());
    for (int stage = 0; stage <= 3; ++stage) {
      for (bool sp : {false, true}) {
        INFO("tp " << t << " × dp " << mesh.dp_size() << ", ZeRO " << stage << ", SP " << sp);
        const Run got = tensor_parallel(mesh, stage, sp);
        for (int s = 0; s < kSteps; ++s) {
          INFO("step " << s << ": loss " << got.losses[s] << " vs " << want.losses[s] << ", norm "
                       << got.norms[s] << " vs " << want.norms[s]);
          CHECK(want.norms[s] > kClip);
          CHECK(std::fabs(got.losses[s] - want.losses[s]) <= 1e-5 * want.losses[s]);
          CHECK(std::fabs(got.norms[s] - want.norms[s]) <= 1e-5 * want.norms[s]);
        }
        // A 1-rank dp group (every rank in tp) issues no collective: the
        // gradient reduction, the norm and the loss average cost nothing.
        if (mesh.dp_size() == 1) {
          CHECK(got.dp_traffic.collective_calls() == 0);
          CHECK(got.dp_traffic.total().sent == 0);
        } else {
          CHECK(got.dp_traffic.collective_calls() > 0);
        }
        for (const auto& [name, p] : want.weights->named_parameters()) {
          INFO(name);
          CHECK(rel_error(got.weights->parameter(name), p) <= 1e-5);
        }
      }
    }
  }
}
