// Lesson 05 grader (run on 4 ranks): my_ring_all_reduce against MPI's
// all-reduce on sizes the rank count does not divide, smaller than it, and
// large enough to deadlock a naive blocking ring. Every rank reaches the same
// verdict: each rank checks its own result, then the verdicts are all-reduced.
// A deadlock or an exception on one rank ends the whole job with the rank and
// the reason (ms::run_distributed and the communicator timeout).
//
// The learner's code gets a Communicator whose Backend is a CountingBackend:
// it forwards to MPI and counts bytes and collective calls, so the grader can
// tell a real ring (2(D-1)/D of the data per rank) from correct but slower
// schemes (whole tensors around the ring, reduce to a root + broadcast), and
// from simply calling all_reduce. (Swapping the backend under an unchanged
// Communicator is the same seam an NCCL backend plugs into.)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "lessons/05_collectives/lesson.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/ring.h"
#include "parallel/comm/runtime.h"

using namespace ms;

namespace {

constexpr double kTimeout = 20;  // seconds before a stuck send/recv aborts the job

// Small integers: sums are exact, so any difference is a bug, not rounding.
Tensor input(int64_t n, int r) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = double((i * 7 + r * 3) % 11) - 5;
  return from_vector(v, {n});
}

int64_t block_start(int64_t n, int d, int c) {
  return c * (n / d) + std::min<int64_t>(c, n % d);
}
int block_of(int64_t i, int64_t n, int d) {
  int c = 0;
  while (c + 1 < d && block_start(n, d, c + 1) <= i) ++c;
  return c;
}

// "" if got == want, else what looks wrong, with a hint.
std::string diagnose(const Tensor& before, const Tensor& got, const Tensor& want, int d) {
  const int64_t n = want.numel();
  if (!got.defined() || got.numel() != n || got.dtype() != DType::F32)
    return str_cat("t was replaced by a tensor of another size or dtype; reduce in place");
  std::vector<double> b = before.to_vector(), g = got.to_vector(), w = want.to_vector();
  if (g == w) return "";
  if (g == b && b != w) return "t is unchanged: nothing was reduced (still the TODO stub?)";
  int64_t wrong = 0, first = -1;
  std::vector<bool> block_ok(d, true);
  for (int64_t i = 0; i < n; ++i)
    if (g[i] != w[i]) {
      ++wrong;
      if (first < 0) first = i;
      block_ok[block_of(i, n, d)] = false;
    }
  std::string blocks;
  for (int c = 0; c < d; ++c) blocks += str_cat(c ? ", " : "", c, block_ok[c] ? " ok" : " WRONG");
  std::string msg = str_cat(wrong, " of ", n, " elements are wrong; first at index ", first,
                            " (block ", block_of(first, n, d), "): got ", g[first], ", expected ",
                            w[first], ". Blocks (n = ", n, " into ", d, "): ", blocks, ".");
  int ok_blocks = int(std::count(block_ok.begin(), block_ok.end(), true));
  if (ok_blocks == 1)
    msg +=
        " Exactly one block is right: that looks like the reduce-scatter without the "
        "all-gather.";
  else if (n % d != 0)
    msg += str_cat(" n is not a multiple of ", d,
                   ": do your block boundaries cover every "
                   "element, and does every rank compute the same boundaries?");
  if (g[first] == 2 * w[first]) msg += " The value is doubled: is a block added twice?";
  return msg;
}

// Forwards every op to `inner`'s backend, counting what the learner does.
class CountingBackend final : public Backend {
 public:
  explicit CountingBackend(Communicator inner) : inner_(std::move(inner)) {}
  int64_t bytes_sent = 0, bytes_received = 0, collectives = 0;

  const char* name() const override { return "counting"; }
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void set_timeout(double s) override { inner_.set_timeout(s); }
  double timeout() const override { return inner_.timeout(); }
  Work all_reduce(Tensor& t, ReduceOp op, bool b) override {
    ++collectives;
    return inner_.backend().all_reduce(t, op, b);
  }
  Work reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool b) override {
    ++collectives;
    return inner_.backend().reduce_scatter(in, out, op, b);
  }
  Work all_gather(const Tensor& in, Tensor& out, bool b) override {
    ++collectives;
    return inner_.backend().all_gather(in, out, b);
  }
  Work broadcast(Tensor& t, int root, bool b) override {
    ++collectives;
    return inner_.backend().broadcast(t, root, b);
  }
  Work barrier(bool b) override {
    ++collectives;
    return inner_.backend().barrier(b);
  }
  Work send(const Tensor& t, int dst, int tag, bool b) override {
    bytes_sent += int64_t(t.nbytes());
    return inner_.backend().send(t, dst, tag, b);
  }
  Work recv(Tensor& t, int src, int tag, bool b) override {
    bytes_received += int64_t(t.nbytes());
    return inner_.backend().recv(t, src, tag, b);
  }
  std::shared_ptr<Backend> split(int color, int key) override {
    return inner_.backend().split(color, key);
  }

 private:
  Communicator inner_;
};

// A ring moves 2(D-1) blocks of at most ceil(n/D) elements per rank.
std::string check_traffic(const CountingBackend& c, int64_t n, int d) {
  if (c.collectives > 0)
    return str_cat("my_ring_all_reduce called ", c.collectives,
                   " collective(s) (all_reduce, "
                   "broadcast, barrier, ...): use only send/recv or isend/irecv");
  const int64_t bound = 2 * (d - 1) * ((n + d - 1) / d) * 4;
  const int64_t most = std::max(c.bytes_sent, c.bytes_received);
  if (most <= bound) return "";
  return str_cat("the result is right, but this rank sent ", c.bytes_sent, " and received ",
                 c.bytes_received,
                 " bytes; a ring moves at most 2(D-1) blocks of ceil(n/D) "
                 "floats = ",
                 bound,
                 " bytes each way. Whole tensors around the ring, or "
                 "everything through one root, cost up to D/2 times more (README, question 4)");
}

bool check_size(Communicator& world, int64_t n) {
  const int d = world.size(), r = world.rank();
  Tensor t = input(n, r), before = clone(t), want = clone(t);
  world.all_reduce(want);  // MPI's answer
  auto counter = std::make_shared<CountingBackend>(world);
  Communicator counted(counter);
  my_ring_all_reduce(counted, t);
  std::string why = diagnose(before, t, want, d);
  if (why.empty()) why = check_traffic(*counter, n, d);
  // One line per failure: the explanation and "(k of D ranks failed)" share it.
  return lesson::agree(world, why.empty() ? why : str_cat("n = ", n, ": ", why),
                       str_cat("n = ", n, " on ", d, " ranks",
                               n % d ? str_cat(" (uneven: ", n, " % ", d, " = ", n % d, ")") : ""),
                       " ");
}

// Informational: seconds per call, slowest rank, best of a few.
double seconds(Communicator& world, const std::function<void()>& f) {
  double best = 1e30;
  for (int k = 0; k < 5; ++k) {
    world.barrier();
    auto t0 = std::chrono::steady_clock::now();
    f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Tensor dt = from_vector(std::vector<double>{s}, {1}, DType::F64);
    world.all_reduce(dt, ReduceOp::Max);
    best = std::min(best, dt.data<double>()[0]);
  }
  return best;
}

void show_costs(Communicator& world) {
  const int d = world.size();
  const int64_t n = 1 << 20;  // 4 MB of f32
  Tensor a = zeros({n}), b = zeros({n}), c = zeros({n});
  double mine = seconds(world, [&] { my_ring_all_reduce(world, a); });
  double lib = seconds(world, [&] { ring_all_reduce(world, b); });
  double mpi = seconds(world, [&] { world.all_reduce(c); });
  if (world.rank() != 0) return;
  auto busbw = [&](double s) { return 4.0 * n / s / 1e9 * 2.0 * (d - 1) / d; };
  std::printf(
      "\n4 MB f32 all-reduce on %d ranks (busbw = bytes/time * 2(D-1)/D; a shared "
      "machine is noisy):\n",
      d);
  std::printf("  my_ring_all_reduce   %8.0f us  busbw %5.2f GB/s\n", mine * 1e6, busbw(mine));
  std::printf(
      "  ms::ring_all_reduce  %8.0f us  busbw %5.2f GB/s  (the library's: every dtype and op)\n",
      lib * 1e6, busbw(lib));
  std::printf("  MPI all-reduce       %8.0f us  busbw %5.2f GB/s\n", mpi * 1e6, busbw(mpi));
  std::printf("  each rank sent 2(D-1)/D * 4 MB = %.1f MB in 2(D-1) = %d messages\n",
              2.0 * (d - 1) / d * 4, 2 * (d - 1));
}

}  // namespace

int main(int argc, char** argv) {
  return run_distributed(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    if (world.rank() == 0)
      std::printf(
          "checking my_ring_all_reduce on %d ranks against MPI's all-reduce (a deadlock "
          "aborts after %.0f s: README, question 8)\n",
          world.size(), kTimeout);
    // Small first (easy to debug), then uneven, smaller than D, and big
    // enough that blocking sends on every rank would deadlock.
    for (int64_t n : {int64_t(world.size()) * 3, int64_t(1), int64_t(3), int64_t(7), int64_t(1001),
                      int64_t(262147), int64_t(1) << 20})
      if (!check_size(world, n)) return lesson::finish(world, false);
    show_costs(world);
    return lesson::finish(world, true);
  });
}
