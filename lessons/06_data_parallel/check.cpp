// Lesson 06 grader (4 ranks). First make_buckets on its own; then the real
// thing: every rank holds the same 2-layer GPT, reads its own quarter of the
// global batch, and a gradient hook per parameter launches your
// launch_bucket() the moment a bucket's last gradient is ready — during
// backward. After backward your finish_bucket() must leave every rank with the
// gradient one process computes on the whole global batch, and three SGD steps
// must give one process's losses. Every rank checks its own result and the
// verdicts are all-reduced, so all ranks agree; a stuck collective aborts the
// job after 20 s with its name.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "lessons/06_data_parallel/lesson.h"
#include "lessons/lesson_check.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using lesson::agree;

namespace {

constexpr double kTimeout = 20;
constexpr int64_t B = 2, T = 16;
constexpr size_t kCap = 16 << 10;  // small buckets, so this small model has several

std::string show(const std::vector<std::vector<int>>& buckets) {
  std::string s = "[";
  for (size_t b = 0; b < buckets.size(); ++b) {
    s += b ? ", [" : "[";
    for (size_t k = 0; k < buckets[b].size(); ++k) s += str_cat(k ? "," : "", buckets[b][k]);
    s += "]";
  }
  return s + "]";
}

// "" when make_buckets matches PyTorch DDP's rule on these cases.
std::string check_buckets() {
  std::vector<Tensor> ps = {zeros({100}), zeros({10}), zeros({300}), zeros({5}), zeros({5})};
  struct Case {
    size_t cap;
    std::vector<std::vector<int>> want;
  };
  for (const Case& c : {Case{400, {{4, 3, 2}, {1, 0}}}, Case{1, {{4}, {3}, {2}, {1}, {0}}},
                        Case{1 << 20, {{4, 3, 2, 1, 0}}}}) {
    std::vector<std::vector<int>> got = make_buckets(ps, c.cap);
    if (got == c.want) continue;
    std::string msg = str_cat("make_buckets(params of 400, 40, 1200, 20, 20 bytes, cap ", c.cap,
                              ") returned ", show(got), ", expected ", show(c.want), ".");
    if (got.empty()) return msg + " Nothing came back: still the TODO stub?";
    if (!got[0].empty() && got[0][0] == 0)
      return msg + " Start from the LAST parameter: backward produces its gradient first.";
    return msg +
           " Close a bucket once it holds >= cap bytes (the parameter that crosses the "
           "cap stays in it).";
  }
  return "";
}

double rel_error(const Tensor& got, const Tensor& want) {
  std::vector<double> a = got.to_vector(), b = want.to_vector();
  double scale = 0, worst = 0;
  for (double x : b) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / scale);
  return worst;
}

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 32, c.block_size = T;
  return c;
}

// DDP around a model, with YOUR bucket functions: hooks launch, finish() averages.
struct MiniDDP {
  Communicator comm;
  std::vector<Tensor> params;
  std::vector<std::vector<int>> buckets;
  std::vector<int> bucket_of, left;
  std::vector<InFlightBucket> in_flight;
  size_t next = 0, arrived = 0;
  std::vector<size_t> arrived_at_launch;  // for the timeline

  MiniDDP(Communicator c, std::vector<Tensor> ps) : comm(std::move(c)), params(std::move(ps)) {
    buckets = make_buckets(params, kCap);
    bucket_of.assign(params.size(), 0);
    for (size_t b = 0; b < buckets.size(); ++b)
      for (int i : buckets[b]) bucket_of[i] = static_cast<int>(b);
    reset();
    for (size_t i = 0; i < params.size(); ++i)
      params[i].register_grad_hook([this, i](Tensor&) { ready(static_cast<int>(i)); });
  }
  void reset() {
    left.clear();
    for (auto& b : buckets) left.push_back(static_cast<int>(b.size()));
    in_flight.assign(buckets.size(), InFlightBucket{});
    next = arrived = 0;
    arrived_at_launch.clear();
  }
  // Runs inside backward when params[i]'s gradient is final.
  void ready(int i) {
    ++arrived;
    --left[bucket_of[i]];
    while (next < buckets.size() && left[next] == 0) {  // in bucket order on every rank
      arrived_at_launch.push_back(arrived);
      in_flight[next] = launch_bucket(comm, params, buckets[next]);
      ++next;
    }
  }
  void finish() {
    for (size_t b = 0; b < buckets.size(); ++b)
      finish_bucket(comm, in_flight[b], params, buckets[b]);
    reset();
  }
};

bool run(Communicator& world) {
  const int D = world.size(), r = world.rank();
  if (r == 0)
    std::printf(
        "Distributed training, data-parallel: %d ranks, each with a full copy of a GPT, "
        "each reading its own %lld sequences of the global batch of %lld.\n",
        D, static_cast<long long>(B), static_cast<long long>(D * B));
  if (!agree(world, check_buckets(), "make_buckets groups in reverse order and closes at the cap"))
    return false;

  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  GPT model(tiny(), 1), reference(tiny(), 1);  // same seed: DDP would broadcast rank 0's
  MiniDDP ddp(world, model.parameters());
  auto names = model.named_parameters();

  // One backward: the average of the 4 local gradients must be the gradient
  // of one process on all 8 sequences.
  Batch mine = data.train_batch(0, r, D, B, T), global = data.train_batch(0, 0, 1, D * B, T);
  model.loss(mine.x, mine.y).backward();
  std::vector<Tensor> local;
  for (const Tensor& p : model.parameters()) local.push_back(clone(p.grad()));
  const std::vector<size_t> arrived_at_launch = ddp.arrived_at_launch;
  // Each bucket must travel as ONE buffer holding all its gradients.
  std::string why;
  for (size_t b = 0; b < ddp.buckets.size() && why.empty(); ++b) {
    int64_t n = 0;
    for (int i : ddp.buckets[b]) n += names[i].second.numel();
    const Tensor& flat = ddp.in_flight[b].flat;
    if (!flat.defined())
      why = str_cat("launch_bucket returned no buffer for bucket ", b, " (still the TODO stub?)");
    else if (flat.numel() != n)
      why = str_cat("bucket ", b, "'s buffer has ", flat.numel(),
                    " elements, but its gradients have ", n,
                    ": pack all of them, back to back, into one buffer (one all-reduce, "
                    "latency α once, instead of one per parameter)");
  }
  if (arrived_at_launch.size() != ddp.buckets.size() && why.empty())
    why = "not every bucket was launched during backward";
  ddp.finish();
  reference.loss(global.x, global.y).backward();
  std::vector<Tensor> ref_params = reference.parameters();
  for (size_t i = 0; i < names.size() && why.empty(); ++i) {
    const Tensor& g = names[i].second.grad();
    const Tensor& want = ref_params[i].grad();
    double err = rel_error(g, want);
    if (err <= 1e-5) continue;
    why = str_cat("gradient of ", names[i].first, " after finish_bucket is off by ", err,
                  " (relative to its largest element).");
    if (rel_error(g, local[i]) == 0)
      why += " It is still this rank's LOCAL gradient: nothing was averaged (stubs?).";
    else if (rel_error(g, mul(want, double(D))) <= 1e-5)
      why += str_cat(" It is ", D,
                     "x the answer: you SUMMED; average (ReduceOp::Avg, or divide "
                     "by comm.size()).");
    else
      why += " Check the offsets you pack and unpack with: the same order both ways.";
  }
  if (!agree(world, why,
             str_cat(ddp.buckets.size(),
                     " buckets, each packed and averaged with one "
                     "all-reduce: one process's gradient on the global batch")))
    return false;

  if (r == 0) {
    std::printf("\nWhen each bucket started its all-reduce (%zu parameters, backward order):\n",
                names.size());
    for (size_t b = 0; b < ddp.buckets.size(); ++b) {
      size_t bytes = 0;
      for (int i : ddp.buckets[b]) bytes += names[i].second.nbytes();
      std::printf(
          "  bucket %zu: %-28s .. %-26s %6.1f KB, after %2zu of %zu gradients: "
          "backward still had %zu to compute\n",
          b, names[ddp.buckets[b].front()].first.c_str(),
          names[ddp.buckets[b].back()].first.c_str(), bytes / 1024.0, arrived_at_launch[b],
          names.size(), names.size() - arrived_at_launch[b]);
    }
    std::printf("  -> every bucket but the last travels while backward is still computing.\n\n");
  }

  // Three SGD steps: the losses of 4 ranks x batch 2 are those of 1 process x batch 8.
  model.zero_grad(), reference.zero_grad();
  SGD opt(model.parameters(), 0.1, 0.9), ref_opt(reference.parameters(), 0.1, 0.9);
  std::string steps;
  why.clear();
  for (int step = 1; step <= 3; ++step) {
    Batch b = data.train_batch(step, r, D, B, T), g = data.train_batch(step, 0, 1, D * B, T);
    Tensor loss = model.loss(b.x, b.y);
    loss.backward();
    ddp.finish();
    Tensor avg = from_vector(std::vector<double>{loss.item()}, {1}, DType::F64);
    world.all_reduce(avg, ReduceOp::Avg);
    Tensor ref_loss = reference.loss(g.x, g.y);
    ref_loss.backward();
    opt.step(), ref_opt.step();
    opt.zero_grad(), ref_opt.zero_grad();
    steps += str_cat("  step ", step, ": mean loss over ranks ", avg.item(), ", one process ",
                     ref_loss.item(), "\n");
    if (std::fabs(avg.item() - ref_loss.item()) > 1e-5 * ref_loss.item() && why.empty())
      why = str_cat("step ", step, ": the ranks' mean loss ", avg.item(),
                    " differs from one "
                    "process's ",
                    ref_loss.item());
  }
  if (r == 0) std::printf("%s", steps.c_str());
  return agree(world, why,
               str_cat(D, " ranks x batch ", B, " train exactly like 1 process x batch ", D * B));
}

// Informational: why buckets. One all-reduce per parameter pays the latency
// α per call; one per bucket pays it a few times; one for all waits for all.
void show_costs(Communicator& world) {
  GPT model(tiny(), 1);
  std::vector<Tensor> grads;
  for (const Tensor& p : model.parameters()) grads.push_back(zeros(p.shape()));
  Tensor all = zeros({model.num_parameters()});
  auto time = [&](const std::function<void()>& f) {
    double best = 1e30;
    for (int k = 0; k < 5; ++k) {
      world.barrier();
      auto t0 = std::chrono::steady_clock::now();
      f();
      Tensor dt = from_vector(
          std::vector<double>{
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
          {1}, DType::F64);
      world.all_reduce(dt, ReduceOp::Max);
      best = std::min(best, dt.item());
    }
    return best;
  };
  double per_param = time([&] {
    for (Tensor& g : grads) world.all_reduce(g);
  });
  double one = time([&] { world.all_reduce(all); });
  if (world.rank() == 0)
    std::printf(
        "\nall-reduce of %zu gradients one by one: %.0f us; packed into one buffer: %.0f us "
        "(same bytes, %zu x fewer latencies α; noisy on a shared machine)\n",
        grads.size(), per_param * 1e6, one * 1e6, grads.size());
}

}  // namespace

int main(int argc, char** argv) {
  return run_distributed(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    if (!run(world)) return lesson::finish(world, false);
    show_costs(world);
    return lesson::finish(world, true);
  });
}
