// Collectives, MPI's (Communicator) and ours (parallel/comm/ring.h), against
// a reduction computed locally: every dtype, every ReduceOp, sizes that the
// rank count does not divide (1, 7, 1001, 2^20+3) and empty tensors.
//
// Inputs are small integers, so every sum is exact in every dtype and results
// can be compared bit for bit; Avg divides in the reduce dtype exactly as the
// library does (f32 for bf16/f16, then one rounding).
//
// Rule (docs/architecture.md, Testing): collectives run before anything that
// could stop a rank early. Only CHECK (never REQUIRE) is used between
// collectives.
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/ring.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

const DType kDTypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32};
const ReduceOp kOps[] = {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max};
const int64_t kBig = (int64_t(1) << 20) + 3;

// Element i of rank r's input: an integer in [-5, 5].
double value(int64_t i, int r) {
  return double((i * 7 + r * 3) % 11) - 5;
}

Tensor input(int64_t n, int r, DType dtype, int64_t first = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = value(first + i, r);
  return from_vector(v, {n}, dtype);
}

// The reduction over ranks of element i, with Avg divided like the library.
double reduced(int64_t i, int d, ReduceOp op, DType dtype) {
  double acc = value(i, 0);
  for (int r = 1; r < d; ++r)
    acc = op == ReduceOp::Max ? std::max(acc, value(i, r)) : acc + value(i, r);
  if (op != ReduceOp::Avg) return acc;
  if (dtype == DType::I32) return double(int32_t(acc) / d);
  if (dtype == DType::F64) return acc / d;
  return double(float(acc) / float(d));  // f32, and bf16/f16 reduced in f32
}

Tensor expected(int64_t n, int d, ReduceOp op, DType dtype, int64_t first = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = reduced(first + i, d, op, dtype);
  return from_vector(v, {n}, dtype);  // rounds once, like the library
}

// "" when equal, else the first difference.
std::string mismatch(const Tensor& got, const Tensor& want) {
  if (got.numel() != want.numel()) return str_cat("numel ", got.numel(), " vs ", want.numel());
  std::vector<double> g = got.to_vector(), w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i] != w[i]) return str_cat("element ", i, ": got ", g[i], ", expected ", w[i]);
  return "";
}

bool big_case(int64_t n, DType dtype) {
  return n == kBig && dtype != DType::F32 && dtype != DType::BF16;
}

}  // namespace

TEST_CASE("all_reduce: MPI and ring give the local reduction for every dtype and op",
          "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1001), kBig})
    for (DType dtype : kDTypes)
      for (ReduceOp op : kOps)
        for (bool ring : {false, true}) {
          if (big_case(n, dtype) || (n == kBig && op == ReduceOp::Max)) continue;
          Tensor t = input(n, r, dtype);
          if (n == 1001) t = reshape(t, {7, 143});  // any shape: collectives see numel
          if (ring)
            ring_all_reduce(world, t, op);
          else
            world.all_reduce(t, op);
          INFO((ring ? "ring_all_reduce " : "all_reduce ")
               << reduce_op_name(op) << " " << dtype_name(dtype) << " n=" << n << " on " << d
               << " ranks");
          CHECK(mismatch(t, expected(n, d, op, dtype)) == "");
        }
}

TEST_CASE("reduce_scatter: rank r gets block r reduced (MPI and ring)", "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  for (int64_t m : {int64_t(0), int64_t(1), int64_t(7), int64_t(1001), (int64_t(1) << 18) + 3})
    for (DType dtype : kDTypes)
      for (ReduceOp op : kOps)
        for (bool ring : {false, true}) {
          if (m > 1001 && (dtype == DType::F64 || dtype == DType::F16)) continue;
          Tensor in = input(d * m, r, dtype);
          Tensor out = full({m}, -99, dtype);
          if (ring)
            ring_reduce_scatter(world, in, out, op);
          else
            world.reduce_scatter(in, out, op);
          INFO((ring ? "ring_reduce_scatter " : "reduce_scatter ")
               << reduce_op_name(op) << " " << dtype_name(dtype) << " block=" << m << " on " << d
               << " ranks");
          CHECK(mismatch(out, expected(m, d, op, dtype, r * m)) == "");
        }
}

TEST_CASE("all_gather: block r of the output is rank r's input (MPI and ring)",
          "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  for (int64_t m : {int64_t(0), int64_t(1), int64_t(7), int64_t(1001), (int64_t(1) << 18) + 3})
    for (DType dtype : kDTypes)
      for (bool ring : {false, true}) {
        Tensor in = input(m, r, dtype);
        Tensor out = full({d, m}, -99, dtype);
        if (ring)
          ring_all_gather(world, in, out);
        else
          world.all_gather(in, out);
        std::vector<double> want;
        for (int q = 0; q < d; ++q)
          for (int64_t i = 0; i < m; ++i) want.push_back(value(i, q));
        INFO((ring ? "ring_all_gather " : "all_gather ") << dtype_name(dtype) << " block=" << m);
        CHECK(mismatch(out, from_vector(want, {d, m}, dtype)) == "");
      }
}

TEST_CASE("all_gather in place: `in` is this rank's block of `out`", "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  Tensor out = zeros({d * 5});
  Tensor mine = narrow(out, 0, r * 5, 5);
  fill_(mine, r + 1);
  ring_all_gather(world, mine, out);
  std::vector<double> want;
  for (int q = 0; q < d; ++q) want.insert(want.end(), 5, q + 1);
  CHECK(mismatch(out, from_vector(want, {d * 5})) == "");
}

TEST_CASE("broadcast copies the root's tensor to every rank, any dtype", "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  for (int root = 0; root < d; ++root)
    for (DType dtype : kDTypes) {
      Tensor t = input(1001, r, dtype);
      world.broadcast(t, root);
      INFO("broadcast " << dtype_name(dtype) << " from root " << root);
      CHECK(mismatch(t, input(1001, root, dtype)) == "");
    }
}

TEST_CASE("nonblocking collectives overlap and complete in any wait order", "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  Tensor a = input(1001, r, DType::F32), b = input(7, r, DType::BF16);
  Tensor c = input(65537, r, DType::I32), g = full({d * 3}, -1, DType::F64);
  Tensor rs_in = input(d * 11, r, DType::F16), rs_out = zeros({11}, DType::F16);
  Tensor gin = input(3, r, DType::F64);
  std::vector<Work> works;
  works.push_back(world.iall_reduce(a, ReduceOp::Sum));
  works.push_back(world.iall_reduce(b, ReduceOp::Avg));
  works.push_back(world.iall_reduce(c, ReduceOp::Max));
  works.push_back(world.ireduce_scatter(rs_in, rs_out, ReduceOp::Sum));
  works.push_back(world.iall_gather(gin, g));
  // Poll the first with test() (what overlapping code does), wait for the rest backwards.
  for (int spins = 0; !works[0].test() && spins < 10000000; ++spins) {
  }
  for (size_t i = works.size(); i-- > 0;) works[i].wait();
  CHECK(works[0].test());
  CHECK(mismatch(a, expected(1001, d, ReduceOp::Sum, DType::F32)) == "");
  CHECK(mismatch(b, expected(7, d, ReduceOp::Avg, DType::BF16)) == "");
  CHECK(mismatch(c, expected(65537, d, ReduceOp::Max, DType::I32)) == "");
  CHECK(mismatch(rs_out, expected(11, d, ReduceOp::Sum, DType::F16, r * 11)) == "");
  std::vector<double> want;
  for (int q = 0; q < d; ++q)
    for (int i = 0; i < 3; ++i) want.push_back(value(i, q));
  CHECK(mismatch(g, from_vector(want, {d * 3}, DType::F64)) == "");
}

TEST_CASE("a Work dropped without wait() completes before its tensors can go away",
          "[mpi][collectives]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  Tensor t = input(4099, r, DType::BF16);
  { Work w = world.iall_reduce(t, ReduceOp::Sum); }  // destructor waits
  CHECK(mismatch(t, expected(4099, d, ReduceOp::Sum, DType::BF16)) == "");
  Work done;  // default: already complete
  CHECK(done.test());
  done.wait();
}

TEST_CASE("ring and MPI all-reduce agree bit for bit on random f32 data", "[mpi][collectives]") {
  // Random data: the sum order matters, so only compare ring with itself over
  // repeats and with MPI within rounding (both add the same D numbers).
  Communicator world = Communicator::world();
  const int r = world.rank();
  Generator gen(1234 + r);
  Tensor x = randn({100003}, gen);
  Tensor a = clone(x), b = clone(x), c = clone(x);
  ring_all_reduce(world, a);
  ring_all_reduce(world, b);
  world.all_reduce(c);
  CHECK(mismatch(a, b) == "");
  CHECK(allclose(a, c, 1e-5, 1e-5));
  // Every rank ends with the very same bits (rank 0's copy is broadcast).
  Tensor ref = clone(a);
  world.broadcast(ref, 0);
  CHECK(mismatch(a, ref) == "");
}

TEST_CASE("ring collectives pipelined in tiny segments still give exact results",
          "[mpi][collectives]") {
  // Segments of a few elements force many messages per step, partial last
  // segments and every scratch-window reuse path (the defaults only split
  // blocks above 4 MB).
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  for (RingOptions opt : {RingOptions{12, 1}, RingOptions{20, 2}, RingOptions{8, 3}})
    for (DType dtype : kDTypes)
      for (ReduceOp op : kOps) {
        const int64_t n = 1001;
        Tensor t = input(n, r, dtype);
        ring_all_reduce(world, t, op, opt);
        Tensor in = input(d * 37, r, dtype), out = zeros({37}, dtype);
        ring_reduce_scatter(world, in, out, op, opt);
        Tensor gin = input(37, r, dtype), gout = zeros({d * 37}, dtype);
        ring_all_gather(world, gin, gout, opt);
        std::vector<double> want;
        for (int q = 0; q < d; ++q)
          for (int64_t i = 0; i < 37; ++i) want.push_back(value(i, q));
        INFO(reduce_op_name(op) << " " << dtype_name(dtype) << " segment_bytes "
                                << opt.segment_bytes << " window " << opt.window);
        CHECK(mismatch(t, expected(n, d, op, dtype)) == "");
        CHECK(mismatch(out, expected(37, d, op, dtype, r * 37)) == "");
        CHECK(mismatch(gout, from_vector(want, {d * 37}, dtype)) == "");
      }
}

TEST_CASE("without a timeout, blocking ops give the same results", "[mpi][collectives]") {
  // Timeout off: blocking calls go to MPI_Allreduce & co. with no watchdog
  // armed (with one, as in the other tests, they make the same MPI calls).
  Communicator world = Communicator::world();
  world.set_timeout(0);
  const int d = world.size(), r = world.rank();
  for (DType dtype : kDTypes) {
    Tensor t = input(1001, r, dtype);
    world.all_reduce(t, ReduceOp::Avg);
    Tensor in = input(d * 7, r, dtype), out = zeros({7}, dtype);
    world.reduce_scatter(in, out, ReduceOp::Max);
    Tensor gin = input(5, r, dtype), gout = zeros({d * 5}, dtype);
    world.all_gather(gin, gout);
    Tensor b = input(9, r, dtype);
    world.broadcast(b, d - 1);
    Tensor sent = input(11, r, dtype), got = zeros({11}, dtype);
    if (d % 2 == 0 && r % 2 == 0) {  // pairs: even ranks send first
      world.send(sent, r + 1);
      world.recv(got, r + 1);
    } else if (d % 2 == 0) {
      world.recv(got, r - 1);
      world.send(sent, r - 1);
    }
    world.barrier();
    std::vector<double> want;
    for (int q = 0; q < d; ++q)
      for (int64_t i = 0; i < 5; ++i) want.push_back(value(i, q));
    INFO(dtype_name(dtype));
    CHECK(mismatch(t, expected(1001, d, ReduceOp::Avg, dtype)) == "");
    CHECK(mismatch(out, expected(7, d, ReduceOp::Max, dtype, r * 7)) == "");
    CHECK(mismatch(gout, from_vector(want, {d * 5}, dtype)) == "");
    CHECK(mismatch(b, input(9, d - 1, dtype)) == "");
    if (d % 2 == 0) CHECK(mismatch(got, input(11, r ^ 1, dtype)) == "");
  }
}
