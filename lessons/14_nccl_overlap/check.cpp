// Lesson 14 grader (2 ranks): overlapped_backward on an 8-layer backward whose
// layers each compute for a known time (kLayerMs of calling poll(): the host
// thread only drives communication while "the GPU computes", as it does while
// backward kernels run) and whose buckets are 1 MiB each. It checks, in
// this order:
//   1. correctness: every bucket equals the blocking version's average
//      (summed, not averaged; never reduced; reduced before its layer's
//      backward filled it — each named);
//   2. structure, seen through MPI's profiling interface (PMPI: this file
//      defines MPI_Iallreduce, MPI_Allreduce, MPI_Wait*, MPI_Test* and passes
//      each call on to PMPI_*), with a timestamp on every issue, completion
//      and layer: each bucket's all-reduce must be issued after its layer's
//      compute and before the next layer's compute ends, and still be in
//      flight when the next layer's compute starts; poll() must call into
//      MPI; every request must be complete on return. The timeline is printed.
//      These are orderings of events, not ratios of noisy times;
//   3. measured overlap, printed and not required: wall time of compute
//      alone, of the serial version (each layer, then its all-reduce waited
//      for at once) and of yours, the slowest rank counting, best of 5; the
//      fraction of the serial communication hidden.
#include <mpi.h>

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
#include "tensor/random.h"

using namespace ms;
using lesson::agree;

namespace {

using lesson14::kLayers;
using lesson14::rec;
using lesson14::Record;

constexpr int kBucket = 256 * 1024;  // floats: 1 MiB per bucket
constexpr double kLayerMs = 4.0;     // each layer's backward computes this long

using Clock = std::chrono::steady_clock;

// The model: per layer, kLayerMs of "compute" — a loop that calls poll() until
// the layer's time is up, standing in for backward kernels running on a GPU
// while the host thread only drives communication; its length is known
// whatever else the machine runs — then its gradient: values that depend on
// rank, layer and index.
struct Model {
  int rank;
  std::vector<std::vector<float>> grads = std::vector<std::vector<float>>(kLayers);
  Model(int r) : rank(r) {
    for (auto& v : grads) v.assign(size_t(kBucket), std::nanf(""));
  }
  void reset() {
    for (auto& v : grads) std::fill(v.begin(), v.end(), std::nanf(""));
  }
  void run_layer(int l, const std::function<void()>& poll, bool fill = true) {
    const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double, std::milli>(kLayerMs));
    // poll() as often as this thread runs; yield() leaves the core to the
    // other rank in between (a sleep would wake up milliseconds late on a
    // busy machine, and the all-reduces would sit still meanwhile).
    while (Clock::now() < end) {
      poll();
      std::this_thread::yield();
    }
    if (!fill) return;
    Generator g(uint64_t(1000 * rank + l));
    float* out = grads[size_t(l)].data();
    for (int i = 0; i < kBucket; ++i) out[i] = float(l) + float(g.uniform());
  }
  Backward backward(const std::function<void(int)>& around_layer_start = {},
                    const std::function<void(int)>& around_layer_end = {}) {
    Backward bw;
    bw.layers = kLayers;
    bw.run_layer = [this, around_layer_start, around_layer_end](int l, const std::function<void()>& poll) {
      if (around_layer_start) around_layer_start(l);
      run_layer(l, poll);
      if (around_layer_end) around_layer_end(l);
    };
    bw.bucket = [this](int l) { return grads[size_t(l)].data(); };
    bw.bucket_size = [](int) { return kBucket; };
    return bw;
  }
};

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

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

// Rank 0's timeline, from the PMPI record: per layer its compute and its
// bucket's all-reduce (issued, reported complete), then two lanes of
// characters over the same time axis — which layer computes, which buckets
// are in flight — so the overlap (or its absence) is visible at a glance.
void print_timeline(const Record& r) {
  auto ms = [](double t) { return t < 0 ? std::string("   -  ") : str_cat(fixed1(t)); };
  double end = 0;
  for (int l = 0; l < kLayers; ++l)
    end = std::max({end, r.compute_end_ms[size_t(l)], r.completed_ms[size_t(l)]});
  std::printf("  timeline (rank 0; ms since your overlapped_backward began; \"done\" = the first "
              "MPI_Test/Wait that reported the request complete):\n");
  for (int l = kLayers - 1; l >= 0; --l) {
    const double issued = r.issued_ms[size_t(l)], done = r.completed_ms[size_t(l)];
    std::string note;
    if (issued < 0)
      note = "never issued";
    else if (l == 0)
      note = "the last bucket: no compute left to hide it";
    else if (r.compute_end_ms[size_t(l - 1)] >= 0 && issued > r.compute_end_ms[size_t(l - 1)])
      note = str_cat("issued after layer ", l - 1, "'s compute ended: started late");
    else if (done >= 0 && r.compute_start_ms[size_t(l - 1)] >= 0 &&
             done < r.compute_start_ms[size_t(l - 1)])
      note = str_cat("done before layer ", l - 1, " started: nothing overlapped");
    else
      note = str_cat("in flight while layer ", l - 1, " computes");
    std::printf("    layer %d computes %7s - %7s | bucket %d all-reduce issued %7s, done %7s  (%s)\n",
                l, ms(r.compute_start_ms[size_t(l)]).c_str(), ms(r.compute_end_ms[size_t(l)]).c_str(),
                l, ms(issued).c_str(), ms(done).c_str(), note.c_str());
  }
  constexpr int kWidth = 72;
  std::string compute(kWidth, '.'), comm(kWidth, ' ');
  for (int c = 0; c < kWidth && end > 0; ++c) {
    const double t = (c + 0.5) * end / kWidth;
    int flying = 0, which = 0;
    for (int l = 0; l < kLayers; ++l) {
      if (r.compute_start_ms[size_t(l)] >= 0 && t >= r.compute_start_ms[size_t(l)] &&
          t < r.compute_end_ms[size_t(l)])
        compute[size_t(c)] = char('0' + l);
      const double done = r.completed_ms[size_t(l)] >= 0 ? r.completed_ms[size_t(l)] : end;
      if (r.issued_ms[size_t(l)] >= 0 && t >= r.issued_ms[size_t(l)] && t < done) ++flying, which = l;
    }
    if (flying > 0) comm[size_t(c)] = flying == 1 ? char('0' + which) : '+';
  }
  std::printf("    0 ms %*s %.1f ms\n", kWidth - 6, "", end);
  std::printf("    compute    |%s|  (digit: the layer computing)\n", compute.c_str());
  std::printf("    all-reduce |%s|  (digit: the bucket in flight; +: several)\n", comm.c_str());
}

bool run(Communicator& world) {
  const int rank = world.rank(), ranks = world.size();
  Model mine(rank), ref(rank), local(rank);
  for (int l = 0; l < kLayers; ++l) local.run_layer(l, [] {});  // this rank's own gradients
  serial_backward(ref, ranks);

  // ---- 1 and 2: one run under the profiling layer ----
  rec = Record{};
  rec.started_at_layer_done.assign(kLayers, -1);
  rec.completed_at_layer_started.assign(kLayers, -1);
  rec.started_while_filling.assign(kLayers, false);
  rec.issued_ms.assign(kLayers, -1);
  rec.completed_ms.assign(kLayers, -1);
  rec.compute_start_ms.assign(kLayers, -1);
  rec.compute_end_ms.assign(kLayers, -1);
  for (int l = 0; l < kLayers; ++l) rec.buckets.push_back(mine.grads[size_t(l)].data());
  Backward bw = mine.backward(
      [](int l) {
        rec.compute_start_ms[size_t(l)] = lesson14::now_ms();
        ++rec.layers_started;
      },
      [](int l) {
        rec.compute_end_ms[size_t(l)] = lesson14::now_ms();
        ++rec.layers_done;
      });
  const auto inner = bw.run_layer;
  bw.run_layer = [inner](int l, const std::function<void()>& poll) {
    inner(l, [&poll] {
      ++rec.polls;
      rec.in_poll = true;
      poll();
      rec.in_poll = false;
    });
  };
  rec.t0 = Clock::now();
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
  // Issued in time: bucket l (l > 0) before layer l-1's compute ended, i.e.
  // while at most kLayers - l layers were done.
  int late = -1;
  for (int l = kLayers - 1; l >= 1 && late < 0; --l)
    if (seen.started_at_layer_done[size_t(l)] > kLayers - l) late = l;
  if (rank == 0) {
    print_timeline(seen);
    std::printf("  what your code did (rank 0, seen through PMPI): %d of %d buckets still in flight "
                "when the next layer's backward started; %d blocking MPI_Allreduce call(s); poll() "
                "called %d times, %d MPI call(s) from inside it\n",
                overlapped, kLayers - 1, seen.blocking_calls, seen.polls, seen.calls_in_poll);
  }
  if (!seen.unknown.empty())
    shape = str_cat("you all-reduced ", seen.unknown.size(), " buffer(s) that are not the buckets (",
                    seen.unknown[0], "): reduce each bucket in place, MPI_IN_PLACE on bw.bucket(l), "
                    "so the checker (and DDP) can tell which gradients are in flight");
  else if (late >= 0)
    shape = str_cat(
        "bucket ", late, "'s all-reduce was issued only at ", fixed1(seen.issued_ms[size_t(late)]),
        " ms, after layer ", late - 1, "'s compute had ended too (", fixed1(seen.compute_end_ms[size_t(late - 1)]),
        " ms; its own layer ended at ", fixed1(seen.compute_end_ms[size_t(late)]),
        " ms): it started late, and the compute it could have hidden behind is gone. Issue "
        "each bucket's MPI_Iallreduce the moment run_layer(l) returns, inside the loop");
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
  if (rank == 0) {
    std::printf("  measured (wall time, slowest rank, best of 5; %d layers of %.0f ms compute, %d "
                "buckets of %d KiB, %d ranks, %u cores):\n",
                kLayers, kLayerMs, kLayers, kBucket * 4 / 1024, ranks,
                std::thread::hardware_concurrency());
    std::printf("    compute alone %.1f ms; serial (each layer, then its all-reduce, waited for at once) "
                "%.1f ms, so communication %.1f ms; yours (overlapped) %.1f ms: %.0f%% of the "
                "communication hidden (at most %.0f%% can hide behind the compute)\n",
                compute * 1e3, serial * 1e3, comm * 1e3, yours * 1e3, 100 * hidden,
                comm > 0 ? 100 * std::min(1.0, compute / comm) : 0.0);
    std::printf("    (printed, not required: wall-time ratios on a shared machine are noise; the "
                "timeline's order of events above is the check)\n");
  }
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  return lesson::run_ranks(argc, argv, [](Communicator& world) {
    if (world.rank() == 0)
      std::printf("CPU only: MPI over shared memory between %d processes; no GPU, no NCCL.\n",
                  world.size());
    return lesson::finish(world, run(world));
  });
}
