// Communicator basics: rank/size, point-to-point send/recv (blocking and not,
// tags, size mismatches), barrier, split, and the test-run timeout.
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/communicator.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"

using namespace ms;
using ms::test::error_of;
using ms::test::has;

namespace {

Tensor ranked(int64_t n, int r, DType dtype) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = double((i + 3 * r) % 13);
  return from_vector(v, {n}, dtype);
}

bool same(const Tensor& a, const Tensor& b) {
  return a.to_vector() == b.to_vector();
}

}  // namespace

TEST_CASE("world: rank and size match MPI, timeout is on in tests", "[mpi][comm]") {
  Communicator world = Communicator::world();
  CHECK(world.size() >= 1);
  CHECK(world.rank() >= 0);
  CHECK(world.rank() < world.size());
  CHECK(std::string(world.backend().name()) == "mpi");
  CHECK(world.timeout() > 0);  // tests/mpi/main.cpp sets MS_COMM_TIMEOUT
  world.barrier();
}

TEST_CASE("isend/irecv around the ring, every dtype, uneven sizes", "[mpi][comm]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  const int next = (r + 1) % d, prev = (r + d - 1) % d;
  for (DType dtype : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(1001), int64_t(300007)}) {
      Tensor out = ranked(n, r, dtype), in = zeros({n}, dtype);
      Work rw = world.irecv(in, prev, 5);
      Work sw = world.isend(out, next, 5);
      rw.wait();
      sw.wait();
      INFO(dtype_name(dtype) << " n=" << n);
      CHECK(same(in, ranked(n, prev, dtype)));
    }
}

TEST_CASE("blocking send/recv pairs: even ranks send first, odd ranks receive first",
          "[mpi][comm]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  if (d % 2 != 0) return;  // pairs (0,1), (2,3), ...
  const int peer = r ^ 1;
  Tensor out = ranked(200003, r, DType::F32), in = zeros({200003});  // beyond the eager limit
  if (r % 2 == 0) {
    world.send(out, peer);
    world.recv(in, peer);
  } else {
    world.recv(in, peer);
    world.send(out, peer);
  }
  CHECK(same(in, ranked(200003, peer, DType::F32)));
}

TEST_CASE("messages are matched by tag, not by arrival order", "[mpi][comm]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  const int next = (r + 1) % d, prev = (r + d - 1) % d;
  Tensor one = full({3}, 1 + r), two = full({5}, 10 + r);
  Tensor got_one = zeros({3}), got_two = zeros({5});
  Work s1 = world.isend(one, next, 1), s2 = world.isend(two, next, 2);
  world.recv(got_two, prev, 2);  // the later message first
  world.recv(got_one, prev, 1);
  s1.wait();
  s2.wait();
  CHECK(same(got_one, full({3}, 1 + prev)));
  CHECK(same(got_two, full({5}, 10 + prev)));
}

TEST_CASE("recv of a message with another size is an error naming both sizes", "[mpi][comm]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  const int next = (r + 1) % d, prev = (r + d - 1) % d;
  // Shorter than expected: MPI accepts it, our count check does not.
  Tensor small = ones({5}), want7 = zeros({7});
  Work s = world.isend(small, next, 3);
  std::string err = error_of([&] { world.recv(want7, prev, 3); });
  s.wait();
  INFO(err);
  CHECK(has(err, "recv from rank " + std::to_string(prev)));
  CHECK(has(err, "expected 7 f32 elements"));
  CHECK(has(err, "has 5"));
  // Longer than the buffer: MPI reports truncation, we add the op.
  Tensor big = ones({9});
  s = world.isend(big, next, 4);
  err = error_of([&] { world.recv(want7, prev, 4); });
  s.wait();
  INFO(err);
  CHECK(has(err, "recv from rank " + std::to_string(prev)));
  CHECK(has(err, "MPI error"));
  world.barrier();
}

TEST_CASE("split groups ranks by color and orders them by key", "[mpi][comm]") {
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  // Even and odd ranks, in reverse order.
  Communicator sub = world.split(r % 2, d - r);
  int expected_size = 0, expected_rank = 0, expected_sum = 0;
  for (int q = 0; q < d; ++q)
    if (q % 2 == r % 2) {
      ++expected_size;
      expected_sum += q;
      if (q > r) ++expected_rank;
    }
  Tensor t = from_vector(std::vector<int32_t>{r}, {1});
  sub.all_reduce(t);
  CHECK(sub.size() == expected_size);
  CHECK(sub.rank() == expected_rank);
  CHECK(t.host_data<int32_t>()[0] == expected_sum);
  CHECK(sub.timeout() == world.timeout());  // inherited
  // Splitting a split: everyone alone.
  Communicator alone = sub.split(sub.rank(), 0);
  Tensor u = full({4}, 7);
  alone.all_reduce(u);
  CHECK(alone.size() == 1);
  CHECK(same(u, full({4}, 7)));
}

TEST_CASE("the timeout is on by default: 600 s, MS_COMM_TIMEOUT overrides, 0 turns it off",
          "[mpi][comm]") {
  // tests/mpi/main.cpp sets MS_COMM_TIMEOUT for the run; look behind it.
  const char* set = std::getenv("MS_COMM_TIMEOUT");
  const std::string saved = set ? set : "";
  unsetenv("MS_COMM_TIMEOUT");
  const double unset = Communicator::world().timeout();
  setenv("MS_COMM_TIMEOUT", "0", 1);
  const double off = Communicator::world().timeout();
  setenv("MS_COMM_TIMEOUT", "12.5", 1);
  const double chosen = Communicator::world().timeout();
  setenv("MS_COMM_TIMEOUT", "soon", 1);
  const std::string err = error_of([] { Communicator::world(); });
  if (set)
    setenv("MS_COMM_TIMEOUT", saved.c_str(), 1);
  else
    unsetenv("MS_COMM_TIMEOUT");
  CHECK(unset == 600);
  CHECK(off == 0);
  CHECK(chosen == 12.5);
  CHECK(has(err, "MS_COMM_TIMEOUT='soon'"));
}

TEST_CASE("ranks with different timeouts still run matching blocking collectives", "[mpi][comm]") {
  // The timeout must not change which MPI call a blocking op makes: MPI never
  // matches a blocking collective with a nonblocking one. Rank 0 has none,
  // the others a generous one; large tensors take MPI's multi-message paths.
  Communicator world = Communicator::world();
  const int d = world.size(), r = world.rank();
  world.set_timeout(r == 0 ? 0 : 30);
  const int64_t n = 1 << 18;
  Tensor a = full({n}, 1 + r);
  world.all_reduce(a);
  Tensor in = full({d * n}, 1 + r), out = zeros({n});
  world.reduce_scatter(in, out);
  Tensor g = full({n}, 1 + r), gathered = zeros({d * n});
  world.all_gather(g, gathered);
  Tensor b = full({n}, 1 + r);
  world.broadcast(b, d - 1);
  world.barrier();
  const double sum = d * (d + 1) / 2.0;
  CHECK(same(a, full({n}, sum)));
  CHECK(same(out, full({n}, sum)));
  CHECK(gathered.to_vector()[size_t((d - 1) * n)] == d);
  CHECK(same(b, full({n}, d)));
}
