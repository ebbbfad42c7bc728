// Argument errors: thrown on every rank alike before any message moves (so
// they never leave a peer waiting), naming the op, shapes, dtypes and ranges.
#include <cstdlib>
#include <functional>
#include <string>

#include "autograd/ops.h"
#include "parallel/comm/ring.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"

using namespace ms;
using ms::test::error_of;
using ms::test::has;

TEST_CASE("collectives reject non-contiguous tensors, naming the op and shape", "[mpi][errors]") {
  Communicator world = Communicator::world();
  Tensor t = transpose(reshape(arange(6), {2, 3}), 0, 1);  // [3, 2], strides [1, 3]
  for (auto& [name, call] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"all_reduce", [&] { world.all_reduce(t); }},
           {"broadcast", [&] { world.broadcast(t, 0); }},
           {"send", [&] { world.send(t, 0); }},
           {"ring_all_reduce", [&] { ring_all_reduce(world, t); }}}) {
    std::string err = error_of(call);
    INFO(err);
    CHECK(has(err, name + ": tensor of shape [3, 2]"));
    CHECK(has(err, "not contiguous"));
  }
}

TEST_CASE("reduce_scatter and all_gather check sizes and dtypes", "[mpi][errors]") {
  Communicator world = Communicator::world();
  const int d = world.size();
  Tensor in = zeros({d * 4 + 1}), out = zeros({4}), out16 = zeros({4}, DType::BF16);
  std::string err = error_of([&] { world.reduce_scatter(in, out); });
  INFO(err);
  CHECK(has(err, "reduce_scatter: in [" + std::to_string(d * 4 + 1) + "]"));
  CHECK(has(err, std::to_string(d) + " × 4 = " + std::to_string(d * 4)));
  err = error_of([&] { ring_reduce_scatter(world, in, out); });
  CHECK(has(err, "ring_reduce_scatter"));
  Tensor in_ok = zeros({d * 4});
  err = error_of([&] { world.reduce_scatter(in_ok, out16); });
  CHECK(has(err, "in is f32"));
  CHECK(has(err, "out is bf16"));
  err = error_of([&] { world.all_gather(out, in); });
  CHECK(has(err, "all_gather: out [" + std::to_string(d * 4 + 1) + "]"));
  err = error_of([&] { ring_all_gather(world, out, in); });
  CHECK(has(err, "ring_all_gather"));
  err = error_of([&] { world.all_gather(in_ok, in_ok); });
  CHECK(has(err, "all_gather"));
}

TEST_CASE("ranks, roots and tags out of range are errors", "[mpi][errors]") {
  Communicator world = Communicator::world();
  const int d = world.size();
  Tensor t = zeros({3});
  std::string err = error_of([&] { world.broadcast(t, d); });
  CHECK(has(err, "broadcast: root " + std::to_string(d)));
  err = error_of([&] { world.send(t, -1); });
  CHECK(has(err, "send: peer rank -1"));
  err = error_of([&] { world.recv(t, d); });
  CHECK(has(err, "recv: peer rank " + std::to_string(d)));
  err = error_of([&] { world.send(t, 0, Communicator::kMaxUserTag + 1); });
  CHECK(has(err, "reserved"));
  err = error_of([&] { world.split(-1, 0); });
  CHECK(has(err, "split: color -1"));
  err = error_of([&] { world.set_timeout(-1); });
  CHECK(has(err, "set_timeout"));
}

TEST_CASE("a malformed MS_COMM_TIMEOUT is an error naming the variable", "[mpi][errors]") {
  const char* old = std::getenv("MS_COMM_TIMEOUT");
  std::string saved = old ? old : "";
  setenv("MS_COMM_TIMEOUT", "soon", 1);
  std::string err = error_of([] { Communicator::world(); });
  setenv("MS_COMM_TIMEOUT", "2.5", 1);
  double parsed = Communicator::world().timeout();
  if (old)
    setenv("MS_COMM_TIMEOUT", saved.c_str(), 1);
  else
    unsetenv("MS_COMM_TIMEOUT");
  CHECK(has(err, "MS_COMM_TIMEOUT='soon'"));
  CHECK(parsed == 2.5);
}

TEST_CASE("ring options must be positive", "[mpi][errors]") {
  Communicator world = Communicator::world();
  Tensor t = zeros({8});
  std::string err = error_of([&] { ring_all_reduce(world, t, ReduceOp::Sum, RingOptions{0, 2}); });
  CHECK(has(err, "ring_all_reduce: RingOptions segment_bytes 0"));
}
