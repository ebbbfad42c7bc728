// Lesson 05 grader (run on 4 ranks): my_ring_all_reduce against MPI's
// all-reduce on sizes the rank count does not divide, smaller than it, empty,
// multi-dimensional, and large enough to deadlock a naive blocking ring. Every
// rank reaches the same verdict: each rank checks its own result, then the
// verdicts are all-reduced. A deadlock or an exception on one rank ends the
// whole job with the rank and the reason (ms::run_distributed and the
// communicator timeout).
//
// What the learner's code moved comes from the communicator's ledger
// (parallel/comm/ledger.h), which counts every op per rank: send/recv messages
// exactly, and any collective as a call. So the grader can tell a real ring
// (2(D-1)/D of the data per rank) from correct but slower schemes (whole
// tensors around the ring, everything through a root), and from calling a
// collective — MPI's or the library's own ring — and it prints the measured
// bytes per rank. A wrong result is explained by its pattern: untouched
// remainder, one right block, or (for small n) an index probe that decodes
// which ranks' values from which elements ended where.
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
Tensor input(const Shape& shape, int r) {
  const int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = double((i * 7 + r * 3) % 11) - 5;
  return from_vector(v, shape);
}

int64_t block_start(int64_t n, int d, int c) {
  return c * (n / d) + std::min<int64_t>(c, n % d);
}
int block_of(int64_t i, int64_t n, int d) {
  int c = 0;
  while (c + 1 < d && block_start(n, d, c + 1) <= i) ++c;
  return c;
}

// What a wrong result looks like. Generic: wrong values that no simpler
// pattern explains; those, and OneBlock (one block right), get the index probe
// below.
enum class Wrong { None, Generic, OneBlock, Other };

// "" if got == want, else what looks wrong, with a hint.
std::string diagnose(const Tensor& before, const Tensor& got, const Tensor& want, int d,
                     Wrong* kind) {
  const int64_t n = want.numel();
  *kind = Wrong::Other;
  if (!got.defined() || got.shape() != want.shape() || got.dtype() != DType::F32)
    return str_cat("t was replaced by a tensor of another shape or dtype; reduce in place");
  std::vector<double> b = before.to_vector(), g = got.to_vector(), w = want.to_vector();
  *kind = Wrong::None;
  if (g == w) return "";
  *kind = Wrong::Other;
  // Blocks of n / D elements that forget the remainder cover only the first
  // D·(n / D) elements; the rest are never sent, so they stay as they were.
  const int64_t covered = d * (n / d);
  if (n % d != 0) {
    bool head_right = true, tail_untouched = true;
    for (int64_t i = 0; i < covered; ++i) head_right &= g[i] == w[i];
    for (int64_t i = covered; i < n; ++i) tail_untouched &= g[i] == b[i];
    if (head_right && tail_untouched)
      return str_cat("the last n % D = ", n - covered, " element(s) (indices ", covered, "..",
                     n - 1, ") were never reduced: your blocks cover D·floor(n/D) = ", covered,
                     " elements and drop the remainder. Give the first n % D blocks one extra "
                     "element (7 into 4: 2, 2, 2, 1; 1 into 4: 1, 0, 0, 0 — README question 9)");
  }
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
  if (ok_blocks == 1) {
    *kind = Wrong::OneBlock;
    return msg;  // the hint depends on the probe: see check_shape
  }
  if (n % d != 0)
    msg += str_cat(" n is not a multiple of ", d,
                   ": do your block boundaries cover every "
                   "element, and does every rank compute the same boundaries?");
  if (g[first] == 2 * w[first]) msg += " The value is doubled: is a block added twice?";
  *kind = Wrong::Generic;
  return msg;
}

// ---- the index probe: which ranks' values, from which elements, ended where ----
// Rank r puts 16^r + 16^D·(i + 1) into element i. A sum of such values
// decodes into how many times each rank's value was added (one base-16 digit
// per rank) and the sum of the (i + 1) tags of the elements added, so a wrong
// element tells whether it lacks a rank, has one twice, holds another
// element's finished sum, or mixes elements of different blocks — the
// signatures of an off-by-one block index in the ring. Exact in f32 while the
// value stays below 2^24: D <= 4 and n <= 16.
bool probe_fits(int64_t n, int d) {
  return d >= 2 && d <= 4 && n >= 1 && n <= 16;
}
Tensor probe_input(int64_t n, int r, int d) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = std::pow(16.0, r) + std::pow(16.0, d) * double(i + 1);
  return from_vector(v, {n});
}

// The story of the first wrong element of this rank's probe result, "" if none
// or if the values cannot be decoded (too many additions, garbage). `twice`:
// whether that element has some rank's value more than once.
std::string explain_probe(const Tensor& got, int64_t n, int d, bool* twice_out) {
  *twice_out = false;
  const std::vector<double> g = got.to_vector();
  const int64_t tag = int64_t(std::pow(16.0, d));
  for (int64_t i = 0; i < n; ++i) {
    const double v = g[i];
    if (!(v >= 0 && v < 16777216.0 && v == std::floor(v))) return "";
    const int64_t x = int64_t(v), low = x % tag, pos = x / tag;
    std::vector<int> count(d);
    int total = 0;
    bool once = true;
    for (int r = 0; r < d; ++r) {
      count[r] = int((low >> (4 * r)) & 15);
      total += count[r];
      once &= count[r] == 1;
    }
    if (once && pos == d * (i + 1)) continue;    // right
    if (total == 0 || total > 4 * d) return "";  // beyond that a digit may have carried
    const std::string where = str_cat("element ", i, " (block ", block_of(i, n, d), ")");
    std::string ranks, missing, twice;
    for (int r = 0; r < d; ++r) {
      if (count[r] > 0) ranks += str_cat(ranks.empty() ? "" : ", ", r);
      if (count[r] == 0) missing += str_cat(missing.empty() ? "" : ", ", r);
      if (count[r] > 1) twice += str_cat(twice.empty() ? "" : ", ", r);
    }
    // All its values come from one element j: if j != i, they landed in the wrong place.
    if (pos % total == 0 && pos / total - 1 != i) {
      const int64_t j = pos / total - 1;
      if (j < 0 || j >= n) return "";
      return str_cat(where, " holds ", once ? "the finished sum" : "values", " of element ", j,
                     " (block ", block_of(j, n, d),
                     "): a received block was written into the wrong place — an off-by-one "
                     "block index. The block that arrives at step s is the one the sender sent: "
                     "block r-s-1 in the reduce-scatter, block r-s in the all-gather (README "
                     "question 3)");
    }
    if (pos != int64_t(total) * (i + 1))
      return str_cat(where,
                     " adds up values of different elements: an off-by-one block index in your "
                     "reduce-scatter. At step s rank r sends block r-s and adds what arrives "
                     "from rank r-1, block r-s-1, into its own block r-s-1 (README question 3)");
    if (total == 1)
      return str_cat(where, " holds only rank ", ranks,
                     "'s value: the block that reached it never had anything added — an "
                     "off-by-one block index or step count. Each phase has D-1 steps. In the "
                     "reduce-scatter, add the incoming block into "
                     "the block you send at the NEXT step (r-s-1), not the one you just sent; in "
                     "the all-gather, start from the block the reduce-scatter finished, r+1 "
                     "(README question 3)");
    *twice_out = !twice.empty();
    if (!twice.empty())
      return str_cat(where, " has the value of rank(s) ", twice,
                     " added more than once: an off-by-one ring index — a step too many, or "
                     "a block added in twice (README question 3)");
    return str_cat(where, " holds the sum over rank(s) ", ranks, " only, without ", missing,
                   ": a block moved on, or was kept, before every rank had added into it — an "
                   "off-by-one ring index. Each phase has D-1 steps, and rank r ends the "
                   "reduce-scatter holding the finished block r+1, the first block it passes on "
                   "in the all-gather (README question 3)");
  }
  return "";
}

// A ring moves 2(D-1) blocks of at most ceil(n/D) elements per rank.
std::string check_traffic(const Traffic& t, int64_t n, int d) {
  if (t.collective_calls() > 0) {
    std::string calls;
    for (int i = 0; i < kNumCommOps; ++i) {
      const CommOp op = CommOp(i);
      if (op != CommOp::Send && op != CommOp::Recv && t[op].calls > 0)
        calls += str_cat(calls.empty() ? "" : ", ", comm_op_name(op), " ×", t[op].calls);
    }
    return str_cat("my_ring_all_reduce called collective(s): ", calls,
                   ". Write the ring yourself: use only send/recv or isend/irecv");
  }
  const int64_t bound = 2 * (d - 1) * ((n + d - 1) / d) * 4;
  const int64_t sent = t[CommOp::Send].sent, received = t[CommOp::Recv].received;
  if (std::max(sent, received) <= bound) return "";
  const int64_t ring_messages = 2 * (d - 1);
  const int64_t extra = std::max(t[CommOp::Send].calls, t[CommOp::Recv].calls) - ring_messages;
  const std::string why =
      extra >= 1 && extra <= 2
          ? str_cat(" That is ", ring_messages + extra, " messages where a ring needs 2(D-1) = ",
                    ring_messages, ": ", extra == 1 ? "one step" : "two steps",
                    " too many. Each phase has D-1 steps (README, question 3)")
          : str_cat(" Whole tensors around the ring, or everything through one root, cost up "
                    "to D/2 times more (README, question 4)");
  return str_cat("the result is right, but this rank sent ", sent, " and received ", received,
                 " bytes in ", t[CommOp::Send].calls, " and ", t[CommOp::Recv].calls,
                 " messages; a ring moves at most 2(D-1) blocks of ceil(n/D) floats = ", bound,
                 " bytes each way.", why);
}

// The sizes whose measured traffic is printed even when they pass.
bool show_traffic(int64_t n) {
  return n == 1001 || n == (int64_t(1) << 20);
}

bool check_shape(Communicator& world, const Shape& shape) {
  const int d = world.size(), r = world.rank();
  const int64_t n = shape_numel(shape);
  const std::string name = shape.size() == 1
                               ? str_cat("n = ", n)
                               : str_cat("t of shape ", shape_str(shape), ", n = ", n);
  // Said before the call: if the learner's code throws on this shape, the job
  // aborts with the error, and this line says which case it was.
  if (r == 0 && (shape.size() != 1 || n == 0)) {
    std::printf("  next: %s (lesson.h: any shape, numel 0 included)\n", name.c_str());
    std::fflush(stdout);
  }
  Tensor t = input(shape, r), before = clone(t), want = clone(t);
  world.all_reduce(want);  // MPI's answer
  const Traffic start = world.traffic();
  my_ring_all_reduce(world, t);
  const Traffic mine = world.traffic() - start;
  Wrong kind;
  std::string why = diagnose(before, t, want, d, &kind);
  if (why.empty()) why = check_traffic(mine, n, d);
  // A wrong result nothing simpler explains: run the index probe on every
  // rank (it calls the learner's ring again, so all ranks must agree to).
  const bool probe_me = kind == Wrong::Generic || kind == Wrong::OneBlock;
  Tensor any_probe = from_vector(std::vector<int32_t>{probe_me ? 1 : 0}, {1});
  world.all_reduce(any_probe, ReduceOp::Max);
  std::string story;
  bool twice = false;
  if (any_probe.host_data<int32_t>()[0] && probe_fits(n, d)) {
    Tensor probe = probe_input(n, r, d);
    my_ring_all_reduce(world, probe);
    if (probe_me) story = explain_probe(probe, n, d, &twice);
  }
  if (kind == Wrong::OneBlock) {
    why += twice ? " Exactly one block is right, and the others have values added more than "
                   "once: does your all-gather add the blocks it receives? It must write them "
                   "into place."
                 : " Exactly one block is right: that looks like the reduce-scatter without the "
                   "all-gather.";
  } else if (!story.empty()) {
    why += str_cat(" Probe (rank r adds 16^r to every element, tagged by position): ", story, ".");
  }
  // One line per failure: the explanation and "(k of D ranks failed)" share it.
  const bool ok =
      lesson::agree(world, why.empty() ? why : str_cat(name, ": ", why),
                    str_cat(name, " on ", d, " ranks",
                            n % d ? str_cat(" (uneven: ", n, " % ", d, " = ", n % d, ")") : ""),
                    " ");
  if (!ok || show_traffic(n)) {
    if (r == 0)
      std::printf(
          "  measured by the ledger, %s (%lld B of f32): what each rank's my_ring_all_reduce "
          "sent and received\n",
          name.c_str(), (long long)(4 * n));
    std::vector<Traffic> all = lesson::print_traffic_per_rank(world, mine);
    int64_t total = 0;
    for (const Traffic& x : all) total += x[CommOp::Send].sent;
    if (r == 0)
      std::printf(
          "    sum over ranks: %lld B sent by send/isend; formula for a ring, 2(D-1)·n·4 = %lld B "
          "(per rank "
          "2(D-1)/D·n·4 = %.0f B)\n",
          (long long)total, (long long)(2 * (d - 1) * n * 4), 2.0 * (d - 1) / d * n * 4);
  }
  return ok;
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
    best = std::min(best, dt.host_data<double>()[0]);
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
  std::printf(
      "  (formula: a ring sends 2(D-1)/D * 4 MB = %.1f MB per rank in 2(D-1) = %d messages; "
      "your ring's measured bytes for n = 1048576 are above)\n",
      2.0 * (d - 1) / d * 4, 2 * (d - 1));
}

// Informational (lesson 14 README, question 10): hierarchical all-reduce on 4 ranks seen
// as 2 "nodes" of 2 — reduce-scatter inside the node, all-reduce of 1/g of
// the data across nodes, all-gather inside the node — against the flat ring,
// with the bytes each communicator's ledger counted (MPI's collectives at the
// ring model's bytes, ledger.h). The two results must agree exactly: the
// values are small integers, so every order of summation is exact.
void show_hierarchical(Communicator& world) {
  const int N = world.size(), g = 2, m = N / g, r = world.rank();
  if (N != 4) return;
  const int64_t n = 1 << 20;
  Communicator node = world.split(r / g, r % g);    // my node's ranks, by local rank
  Communicator across = world.split(r % g, r / g);  // the same local rank on every node
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float((i * 7 + r * 3) % 11);
  Tensor flat = from_vector(v, {n}), hier = from_vector(v, {n}), part = zeros({n / g});

  const Traffic w0 = world.traffic(), n0 = node.traffic(), a0 = across.traffic();
  world.all_reduce(flat);
  const int64_t flat_sent = (world.traffic() - w0).total().sent;
  node.reduce_scatter(hier, part);  // my 1/g of the node's sum
  const int64_t rs_sent = (node.traffic() - n0).total().sent;
  across.all_reduce(part);  // 1/g of the data crosses the nodes, on every rank at once
  const int64_t ar_sent = (across.traffic() - a0).total().sent;
  node.all_gather(part, hier);
  const int64_t ag_sent = (node.traffic() - n0).total().sent - rs_sent;
  Tensor differ = from_vector(std::vector<int32_t>{flat.to_vector() == hier.to_vector() ? 0 : 1}, {1});
  world.all_reduce(differ);
  if (r != 0) return;
  const double B = 4.0 * n;  // bytes of the tensor
  std::printf(
      "\nhierarchical all-reduce, %d ranks as %d nodes x %d (lesson 14, question 10), 4 MB f32, bytes "
      "per rank from the ledger (ring model for MPI's collectives); results %s:\n",
      N, m, g, differ.host_data<int32_t>()[0] == 0 ? "identical" : "DIFFER");
  std::printf(
      "  flat ring over all %d ranks: sent %lld B = 2(N-1)/N x 4 MB; on a ring 0-1-2-3 one rank "
      "of each node sends across the node boundary: %lld B per node over one link, in 2(N-1) = %d "
      "steps\n",
      N, (long long)flat_sent, (long long)flat_sent, 2 * (N - 1));
  std::printf(
      "  hierarchical: reduce-scatter in the node %lld B = (g-1)/g x 4 MB | all-reduce across "
      "nodes of 4 MB/g: %lld B = 2(m-1)/m x 4 MB/g, by each of the g ranks at once: %lld B per "
      "node over g links | all-gather in the node %lld B; 2(g-1) + 2(m-1) = %d steps\n",
      (long long)rs_sent, (long long)ar_sent, (long long)(g * ar_sent), (long long)ag_sent,
      2 * (g - 1) + 2 * (m - 1));
  std::printf(
      "  formulas: flat %.0f B; hierarchical %.0f + %.0f + %.0f B, of which %.0f B per node "
      "cross the boundary (flat: %.0f B)\n",
      2.0 * (N - 1) / N * B, (g - 1.0) / g * B, 2.0 * (m - 1) / m * B / g, (g - 1.0) / g * B,
      2.0 * (m - 1) / m * B, 2.0 * (N - 1) / N * B);
}

}  // namespace

int main(int argc, char** argv) {
  return lesson::run_ranks(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    const int64_t d = world.size();
    if (world.rank() == 0)
      std::printf(
          "checking my_ring_all_reduce on %d ranks against MPI's all-reduce (a deadlock "
          "aborts after %.0f s: README, question 8)\n",
          world.size(), kTimeout);
    // Small first (easy to debug), then uneven, smaller than D, other shapes
    // (lesson.h allows any, numel 0 included), and big enough that blocking
    // sends on every rank would deadlock.
    const Shape shapes[] = {{3 * d},   {1}, {3},       {7},      {1001},
                            {3, 5, 7}, {0}, {2, 0, 3}, {262147}, {int64_t(1) << 20}};
    for (const Shape& shape : shapes)
      if (!check_shape(world, shape)) return lesson::finish(world, false);
    show_costs(world);
    show_hierarchical(world);
    return lesson::finish(world, true);
  });
}
