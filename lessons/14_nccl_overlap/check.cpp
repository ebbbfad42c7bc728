// Lesson 14 grader (2 ranks): overlapped_backward on an 8-layer backward whose
// layers really compute (single-thread GEMMs) and whose buckets are 1 MiB
// each. It checks, in this order:
//   1. correctness: every bucket equals the blocking version's average
//      (summed, not averaged; never reduced; reduced before its layer's
//      backward filled it — each named);
//   2. structure, seen through MPI's profiling interface (PMPI: this file
//      defines MPI_Iallreduce, MPI_Allreduce, MPI_Wait*, MPI_Test* and passes
//      each call on to PMPI_*): which bucket's all-reduce was still in flight
//      when the next layer's backward started, whether poll() called into MPI,
//      and whether every request was complete on return;
//   3. measured overlap: wall time of compute alone, of the serial version
//      (each layer, then its all-reduce waited for at once) and of yours, the slowest rank
//      counting, best of 5; the fraction of the serial communication hidden.
//      Required only when that communication is long enough to measure, and
//      when this machine has a core free for the other rank (see below):
//      correctness and structure are required always.
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "lessons/14_nccl_overlap/lesson.h"
#include "lessons/14_nccl_overlap/pmpi_record.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/runtime.h"
#include "tensor/cpu/gemm.h"
#include "tensor/random.h"

using namespace ms;
using lesson::agree;

namespace {

using lesson14::kLayers;
using lesson14::rec;
using lesson14::Record;

constexpr int kBucket = 256 * 1024;  // floats: 1 MiB per bucket
constexpr int kChunks = 64;          // GEMMs per layer's backward
constexpr int64_t kGemm = 64;        // each a 64-cube GEMM, ~50 us on one core
constexpr int kPollEvery = 1;        // a poll() after each: ~50 us apart (see the README)

// The model: per layer, kChunks single-thread GEMMs (its "backward"), then
// its gradient: values that depend on rank, layer and index, and on the GEMMs'
// result (so the compute cannot be skipped without changing the gradient).
struct Model {
  int rank;
  std::vector<std::vector<float>> grads = std::vector<std::vector<float>>(kLayers);
  std::vector<float> a, b, c;
  Model(int r) : rank(r), a(size_t(kGemm * kGemm)), b(a.size()), c(a.size()) {
    Generator g(uint64_t(100 + r));
    for (float& x : a) x = float(g.uniform() - 0.5);
    for (float& x : b) x = float(g.uniform() - 0.5);
    for (auto& v : grads) v.assign(size_t(kBucket), std::nanf(""));
  }
  void reset() {
    for (auto& v : grads) std::fill(v.begin(), v.end(), std::nanf(""));
  }
  void run_layer(int l, const std::function<void()>& poll, bool fill = true) {
    for (int k = 0; k < kChunks; ++k) {
      cpu::gemm_f32(false, false, kGemm, kGemm, kGemm, 1.0f, a.data(), kGemm, b.data(), kGemm,
                    0.0f, c.data(), kGemm);
      if (k % kPollEvery == kPollEvery - 1) poll();
    }
    if (!fill) return;
    const float base = c[size_t(l)] * 1e-3f;
    Generator g(uint64_t(1000 * rank + l));
    float* out = grads[size_t(l)].data();
    for (int i = 0; i < kBucket; ++i) out[i] = base + float(g.uniform());
  }
  Backward backward(const std::function<void()>& around_layer_start = {},
                    const std::function<void()>& around_layer_end = {}) {
    Backward bw;
    bw.layers = kLayers;
    bw.run_layer = [this, around_layer_start, around_layer_end](int l, const std::function<void()>& poll) {
      if (around_layer_start) around_layer_start();
      run_layer(l, poll);
      if (around_layer_end) around_layer_end();
    };
    bw.bucket = [this](int l) { return grads[size_t(l)].data(); };
    bw.bucket_size = [](int) { return kBucket; };
    return bw;
  }
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Wall time of f on the slowest rank, ranks started together.
double timed(const std::function<void()>& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = Clock::now();
  f();
  double s = seconds_since(t0);
  MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return s;
}

// The serial reference: each layer, then its bucket's all-reduce, waited for.
void serial_backward(Model& m, int ranks) {
  for (int l = kLayers - 1; l >= 0; --l) {
    m.run_layer(l, [] {});
    // The same nonblocking collective as yours, waited for at once: the only
    // difference between the two versions is the overlap.
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, m.grads[size_t(l)].data(), kBucket, MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
    for (float& x : m.grads[size_t(l)]) x /= float(ranks);
  }
}

// "" if bucket l of `got` matches the reference; else what it looks like.
std::string compare(const Model& got, const Model& ref, const Model& local, int ranks) {
  for (int l = kLayers - 1; l >= 0; --l) {
    const std::vector<float>&g = got.grads[size_t(l)], &r = ref.grads[size_t(l)],
                            &own = local.grads[size_t(l)];
    auto close = [](float x, float y) { return std::fabs(x - y) <= 1e-6f * (1 + std::fabs(y)); };
    int bad = 0, nan = 0, summed = 0, unreduced = 0;
    for (int i = 0; i < kBucket; ++i) {
      if (std::isnan(g[size_t(i)])) ++nan;
      if (!close(g[size_t(i)], r[size_t(i)])) ++bad;
      if (close(g[size_t(i)], r[size_t(i)] * float(ranks))) ++summed;
      if (close(g[size_t(i)], own[size_t(i)])) ++unreduced;
    }
    if (bad == 0) continue;
    const std::string at = str_cat("bucket ", l, ": ", bad, " of ", kBucket,
                                   " gradients differ from the blocking version's average");
    if (nan > 0)
      return str_cat(at, " (", nan, " are NaN, the value the bucket held before its layer's "
                     "backward). Its all-reduce ran before its layer's backward filled it: start "
                     "it only after run_layer(l) returns");
    if (summed == kBucket)
      return str_cat(at, ": they are the SUM over the ", ranks,
                     " ranks — summed, not averaged: divide by the number of ranks after the wait");
    if (unreduced == kBucket)
      return str_cat(at, ": they are this rank's own gradients — bucket ", l,
                     " was never all-reduced (or you returned before its request completed)");
    return at;
  }
  return "";
}

bool run(Communicator& world) {
  const int rank = world.rank(), ranks = world.size();
  omp_set_num_threads(1);  // one core per rank: the GEMMs must not fight each other's rank
  Model mine(rank), ref(rank), local(rank);
  for (int l = 0; l < kLayers; ++l) local.run_layer(l, [] {});  // this rank's own gradients
  serial_backward(ref, ranks);

  // ---- 1 and 2: one run under the profiling layer ----
  rec = Record{};
  rec.started_at_layer_done.assign(kLayers, -1);
  rec.completed_at_layer_started.assign(kLayers, -1);
  rec.started_while_filling.assign(kLayers, false);
  for (int l = 0; l < kLayers; ++l) rec.buckets.push_back(mine.grads[size_t(l)].data());
  Backward bw = mine.backward([] { ++rec.layers_started; }, [] { ++rec.layers_done; });
  const auto inner = bw.run_layer;
  bw.run_layer = [inner](int l, const std::function<void()>& poll) {
    inner(l, [&poll] {
      ++rec.polls;
      rec.in_poll = true;
      poll();
      rec.in_poll = false;
    });
  };
  rec.on = true;
  overlapped_backward(MPI_COMM_WORLD, bw);
  rec.on = false;
  const Record seen = rec;
  const int left_pending = int(seen.pending.size());
  // Requests left in flight would complete into buffers we are about to read:
  // finish them (outside the learner's record) so the job can go on.
  for (auto& [req, b] : rec.pending) {
    MPI_Request r = req;
    PMPI_Wait(&r, MPI_STATUS_IGNORE);
  }

  std::string why;
  for (int l = kLayers - 1; l >= 0 && why.empty(); --l)
    if (seen.started_while_filling[size_t(l)])
      why = str_cat("bucket ", l, "'s all-reduce was started before layer ", l,
                    "'s backward returned: MPI sent whatever the bucket held then (NaN here), not "
                    "its gradient. Start it only after run_layer(l) returns");
  if (why.empty() && left_pending > 0)
    why = str_cat("you returned with ", left_pending, " all-reduce request(s) not completed: "
                  "wait for every request (MPI_Waitall) before dividing and returning");
  if (why.empty()) why = compare(mine, ref, local, ranks);
  if (!agree(world, why, "the averaged buckets equal the blocking version's, on every rank"))
    return false;

  // Structure: bucket l (for l > 0) must still be in flight when layer l-1 starts.
  std::string shape;
  int overlapped = 0;
  for (int l = kLayers - 1; l >= 1; --l) {
    const int start_done = seen.started_at_layer_done[size_t(l)];
    const int complete = seen.completed_at_layer_started[size_t(l)];
    // Started after kLayers - l layers were done; in flight across the next layer's
    // start if it completed only once kLayers - l + 1 layers had started.
    if (start_done >= 0 && complete > kLayers - l) ++overlapped;
  }
  if (rank == 0) {
    std::printf("  what your code did (rank 0, seen through PMPI): %d of %d buckets still in flight "
                "when the next layer's backward started; %d blocking MPI_Allreduce call(s); poll() "
                "called %d times, %d MPI call(s) from inside it\n",
                overlapped, kLayers - 1, seen.blocking_calls, seen.polls, seen.calls_in_poll);
  }
  if (!seen.unknown.empty())
    shape = str_cat("you all-reduced ", seen.unknown.size(), " buffer(s) that are not the buckets (",
                    seen.unknown[0], "): reduce each bucket in place, MPI_IN_PLACE on bw.bucket(l), "
                    "so the checker (and DDP) can tell which gradients are in flight");
  else if (overlapped < kLayers - 1)
    shape = str_cat("nothing overlapped: only ", overlapped, " of ", kLayers - 1,
                    " buckets were still in flight when the next layer's backward started (",
                    seen.blocking_calls > 0 ? "a blocking MPI_Allreduce" : "a wait right after the start",
                    " finishes the communication before compute goes on). Start each bucket with "
                    "MPI_Iallreduce and wait only after the last layer");
  else if (seen.calls_in_poll == 0)
    shape = "poll() never called into MPI: Open MPI moves a nonblocking collective along only "
            "inside MPI calls, so your all-reduces sat still while the layers computed and all "
            "the work waited for MPI_Waitall. Call MPI_Testall on the requests in flight from poll";
  if (!agree(world, shape,
             "each bucket's all-reduce was started as its layer finished and stayed in flight "
             "(driven by poll) while the next layers computed"))
    return false;

  // ---- 3: measured ----
  double compute = 1e300, serial = 1e300, yours = 1e300;
  for (int rep = 0; rep < 5; ++rep) {
    compute = std::min(compute, timed([&] {
      for (int l = kLayers - 1; l >= 0; --l) mine.run_layer(l, [] {});
    }));
    serial = std::min(serial, timed([&] { serial_backward(ref, ranks); }));
    mine.reset();
    yours = std::min(yours, timed([&] { overlapped_backward(MPI_COMM_WORLD, mine.backward()); }));
  }
  const double comm = serial - compute, hidden = comm > 0 ? (serial - yours) / comm : 0;
  const unsigned cores = std::thread::hardware_concurrency();
  // The shared-memory all-reduce is CPU work: each rank copies and adds. With
  // fewer cores than ranks... the other rank's copy and add compete with this
  // rank's compute for the same core, and nothing can be hidden.
  const bool free_core = cores >= unsigned(2 * ranks);
  const bool measurable = comm >= 0.010 && comm >= 0.1 * compute;
  if (rank == 0) {
    std::printf("  measured (wall time, slowest rank, best of 5; %d layers of %d GEMMs, %d buckets of "
                "%d KiB, %d ranks, %u cores):\n",
                kLayers, kChunks, kLayers, kBucket * 4 / 1024, ranks, cores);
    std::printf("    compute alone %.1f ms; serial (each layer, then its all-reduce, waited for at once) "
                "%.1f ms, so communication %.1f ms; yours (overlapped) %.1f ms: %.0f%% of the "
                "communication hidden (at most %.0f%% can hide behind the compute)\n",
                compute * 1e3, serial * 1e3, comm * 1e3, yours * 1e3, 100 * hidden,
                comm > 0 ? 100 * std::min(1.0, compute / comm) : 0.0);
  }
  std::string slow;
  if (measurable && free_core && hidden < 0.1)
    slow = str_cat("only ", int(100 * hidden), "% of ", comm * 1e3,
                   " ms of communication hidden (need 10% on a machine with a core free per "
                   "rank's communication)");
  if (!measurable || !free_core) {
    if (rank == 0)
      std::printf("    overlap not required here: %s\n",
                  !free_core ? str_cat(cores, " cores for ", ranks, " ranks: the all-reduce's copies and adds "
                                       "are CPU work and compete with the other rank's compute, "
                                       "so the time hidden measures the machine, not your code")
                                   .c_str()
                             : "the communication is too short against the compute to measure");
    std::fflush(stdout);
    return true;
  }
  return agree(world, slow, str_cat("overlap measured: ", int(100 * hidden), "% of the communication hidden"));
}

}  // namespace

int main(int argc, char** argv) {
  return run_distributed(argc, argv, [](Communicator& world) {
    if (world.rank() == 0)
      std::printf("CPU only: MPI over shared memory between %d processes; no GPU, no NCCL.\n",
                  world.size());
    return lesson::finish(world, run(world));
  });
}
