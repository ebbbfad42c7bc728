// All-to-all, MPI's (Communicator::all_to_all / all_to_all_v) and ours
// (pairwise_all_to_all, parallel/comm/ring.h), against the blocks every rank
// can compute locally: element i of the block rank `src` sends to rank `dst`
// is a small integer of (src, dst, i), exact in every dtype, so results are
// compared bit for bit. Uneven counts include zero-size blocks and a rank that
// sends nothing at all; the ledger's bytes are checked against
// all_to_all_bytes and against the (P-1)/P formula.
//
// Rule (docs/architecture.md, Testing): only CHECK between collectives.
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/ring.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

const DType kDTypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32};

// Element i of the block `src` sends to `dst`: an integer in [-60, 60], exact
// in bf16 (8 significant bits) and unique enough to catch a misplaced block.
double value(int src, int dst, int64_t i) {
  return double((src * 37 + dst * 11 + i * 5) % 121) - 60;
}

// Rank r's input: the blocks for ranks 0..P-1, counts[j] elements each.
Tensor input(int r, const std::vector<int64_t>& counts, DType dtype) {
  std::vector<double> v;
  for (size_t j = 0; j < counts.size(); ++j)
    for (int64_t i = 0; i < counts[j]; ++i) v.push_back(value(r, int(j), i));
  return from_vector(v, {int64_t(v.size())}, dtype);
}

// What rank r must receive: rank i's block for r, in rank order.
Tensor expected(int r, const std::vector<int64_t>& from_counts, DType dtype) {
  std::vector<double> v;
  for (size_t i = 0; i < from_counts.size(); ++i)
    for (int64_t k = 0; k < from_counts[i]; ++k) v.push_back(value(int(i), r, k));
  return from_vector(v, {int64_t(v.size())}, dtype);
}

std::string mismatch(const Tensor& got, const Tensor& want) {
  if (got.numel() != want.numel()) return str_cat("numel ", got.numel(), " vs ", want.numel());
  std::vector<double> g = got.to_vector(), w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i] != w[i]) return str_cat("element ", i, ": got ", g[i], ", expected ", w[i]);
  return "";
}

// The uneven pattern: rank s sends count(s, d) elements to rank d; zero for
// every third pair, and rank 1 sends nothing at all (`silent_rank`).
int64_t count(int s, int d, int silent_rank) {
  if (s == silent_rank) return 0;
  return (s * 2 + d * 3) % 3 == 0 ? 0 : 1 + (s * 5 + d * 7) % 9;
}

enum class Impl { Mpi, MpiNonblocking, Pairwise };
const Impl kImpls[] = {Impl::Mpi, Impl::MpiNonblocking, Impl::Pairwise};
const char* impl_name(Impl i) {
  return i == Impl::Mpi ? "all_to_all" : i == Impl::Pairwise ? "pairwise" : "iall_to_all";
}

void run_v(Communicator& comm, Impl impl, const Tensor& in, const std::vector<int64_t>& ic,
           Tensor& out, const std::vector<int64_t>& oc) {
  if (impl == Impl::Mpi) comm.all_to_all_v(in, ic, out, oc);
  if (impl == Impl::MpiNonblocking) comm.iall_to_all_v(in, ic, out, oc).wait();
  if (impl == Impl::Pairwise) pairwise_all_to_all_v(comm, in, ic, out, oc);
}

void run_equal(Communicator& comm, Impl impl, const Tensor& in, Tensor& out) {
  if (impl == Impl::Mpi) comm.all_to_all(in, out);
  if (impl == Impl::MpiNonblocking) comm.iall_to_all(in, out).wait();
  if (impl == Impl::Pairwise) pairwise_all_to_all(comm, in, out);
}

}  // namespace

TEST_CASE("all_to_all: block j goes to rank j, every dtype, MPI and pairwise",
          "[mpi][all_to_all]") {
  Communicator world = Communicator::world();
  const int p = world.size(), r = world.rank();
  for (int64_t m : {int64_t(0), int64_t(1), int64_t(7), int64_t(1001)})
    for (DType dtype : kDTypes)
      for (Impl impl : kImpls) {
        const std::vector<int64_t> counts(size_t(p), m);
        // (P·m/7, 7) when 7 divides m: dim 0 split in P blocks, any shape.
        Tensor in = input(r, counts, dtype);
        if (m % 7 == 0 && m > 0) in = reshape(in, {p * m / 7, 7});
        Tensor out = full(in.shape(), -99, dtype);
        run_equal(world, impl, in, out);
        INFO(impl_name(impl) << " " << dtype_name(dtype) << " block=" << m << " on " << p
                             << " ranks");
        CHECK(mismatch(out, expected(r, counts, dtype)) == "");
      }
}

TEST_CASE("all_to_all_v: uneven blocks, zero-size blocks, a rank sending nothing",
          "[mpi][all_to_all]") {
  Communicator world = Communicator::world();
  const int p = world.size(), r = world.rank();
  for (int silent : {-1, 1})
    for (DType dtype : {DType::F32, DType::BF16, DType::I32})
      for (Impl impl : kImpls) {
        std::vector<int64_t> ic, oc;
        for (int q = 0; q < p; ++q) {
          ic.push_back(count(r, q, silent));
          oc.push_back(count(q, r, silent));
        }
        Tensor in = input(r, ic, dtype);
        Tensor out = full({expected(r, oc, dtype).numel()}, -99, dtype);
        run_v(world, impl, in, ic, out, oc);
        INFO(impl_name(impl) << "_v " << dtype_name(dtype) << " silent rank " << silent << " on "
                             << p << " ranks");
        CHECK(mismatch(out, expected(r, oc, dtype)) == "");
      }
}

TEST_CASE("all_to_all: MPI and pairwise agree bit for bit on random floats", "[mpi][all_to_all]") {
  Communicator world = Communicator::world();
  const int p = world.size(), r = world.rank();
  Generator gen(1234 + uint64_t(r));
  Tensor in = randn({p * 6, 5}, gen);  // (P·6, 5)
  Tensor a = zeros(in.shape()), b = zeros(in.shape());
  world.all_to_all(in, a);
  pairwise_all_to_all(world, in, b);
  CHECK(mismatch(a, b) == "");
  CHECK(allclose(a, b, 0, 0));
}

TEST_CASE("all_to_all: the ledger counts (P-1)/P of the buffer each way", "[mpi][all_to_all]") {
  Communicator world = Communicator::world();
  const int p = world.size(), r = world.rank();
  const int64_t m = 10;  // elements per block
  Tensor in = zeros({p * m}), out = zeros({p * m});
  const int64_t nbytes = p * m * 4;
  Traffic t0 = world.traffic();
  world.all_to_all(in, out);
  Traffic t1 = world.traffic();
  pairwise_all_to_all(world, in, out);
  Traffic t2 = world.traffic();
  const OpTraffic mpi = (t1 - t0)[CommOp::AllToAll];
  const OpTraffic ours = (t2 - t1)[CommOp::PairwiseAllToAll];
  const int64_t formula = (p - 1) * nbytes / p;  // (P-1)/P · buffer
  CHECK(mpi.calls == 1);
  CHECK(mpi.sent == formula);
  CHECK(mpi.received == formula);
  CHECK(mpi.payload == nbytes);
  CHECK(!comm_op_measured(CommOp::AllToAll));
  CHECK(ours.calls == 1);
  CHECK(ours.sent == formula);  // measured: P-1 messages of m elements
  CHECK(ours.received == formula);
  CHECK(comm_op_measured(CommOp::PairwiseAllToAll));
  CHECK((t2 - t1).collective_calls() == 1);  // the pairwise row only: no MPI collective

  // Uneven: every block but the own one, each way, in both rows alike.
  std::vector<int64_t> ic, oc;
  for (int q = 0; q < p; ++q) {
    ic.push_back(count(r, q, 1));
    oc.push_back(count(q, r, 1));
  }
  Tensor vin = zeros({input(r, ic, DType::F32).numel()});
  Tensor vout = zeros({expected(r, oc, DType::F32).numel()});
  int64_t sent = 0, received = 0;
  for (int q = 0; q < p; ++q)
    if (q != r) sent += ic[q] * 4, received += oc[q] * 4;
  Traffic u0 = world.traffic();
  world.all_to_all_v(vin, ic, vout, oc);
  Traffic u1 = world.traffic();
  pairwise_all_to_all_v(world, vin, ic, vout, oc);
  Traffic u2 = world.traffic();
  CHECK((u1 - u0)[CommOp::AllToAll].sent == sent);
  CHECK((u1 - u0)[CommOp::AllToAll].received == received);
  CHECK((u2 - u1)[CommOp::PairwiseAllToAll].sent == sent);
  CHECK((u2 - u1)[CommOp::PairwiseAllToAll].received == received);
  const RingBytes model = all_to_all_bytes(ic, oc, 4, r);
  CHECK(model.sent == sent);
  CHECK(model.received == received);
}

TEST_CASE("all_to_all: a 1-rank group copies and counts nothing", "[mpi][all_to_all]") {
  Communicator world = Communicator::world();
  Communicator alone = world.split(world.rank(), 0);
  Tensor in = from_vector(std::vector<double>{1, 2, 3}, {3}), out = zeros({3});
  alone.all_to_all(in, out);
  CHECK(mismatch(out, in) == "");
  alone.all_to_all_v(in, {3}, out, {3});
  CHECK(mismatch(out, in) == "");
  CHECK(alone.traffic().total().calls == 0);
}

TEST_CASE("all_to_all: bad arguments are errors naming the op, on every rank",
          "[mpi][all_to_all]") {
  Communicator world = Communicator::world();
  const int p = world.size();
  Tensor in = zeros({p * 3 + 1}), out = zeros({p * 3 + 1});
  CHECK_THROWS_WITH(world.all_to_all(in, out), Catch::Contains("multiple of the"));
  CHECK_THROWS_WITH(pairwise_all_to_all(world, in, out), Catch::Contains("multiple of the"));
  Tensor a = zeros({p * 2}), b = zeros({p * 2});
  std::vector<int64_t> short_counts(size_t(p - 1), 2);
  CHECK_THROWS_WITH(world.all_to_all_v(a, short_counts, b, short_counts),
                    Catch::Contains("in_counts has"));
  std::vector<int64_t> bad(size_t(p), 2);
  bad[0] = 3;
  CHECK_THROWS_WITH(world.all_to_all_v(a, bad, b, std::vector<int64_t>(size_t(p), 2)),
                    Catch::Contains("in_counts sum to"));
  std::vector<int64_t> neg(size_t(p), 2);
  neg[0] = -1;
  neg[1] += 3;
  CHECK_THROWS_WITH(pairwise_all_to_all_v(world, a, neg, b, std::vector<int64_t>(size_t(p), 2)),
                    Catch::Contains("is negative"));
  Tensor d = zeros({p * 2}, DType::F64);
  CHECK_THROWS_WITH(world.all_to_all(a, d), Catch::Contains("dtypes must match"));
  CHECK(world.traffic()[CommOp::AllToAll].calls == 0);  // nothing was started
}
