// Collectives on device tensors through the MPI backend (parallel/comm/
// staging.h): a Sim tensor is staged through a host copy, so every op — all
// blocking and nonblocking forms, every dtype — leaves the Sim tensor holding
// what the CPU op leaves in a CPU tensor, bit for bit, and the ledger counts
// the same payload bytes as for the CPU tensor.
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/communicator.h"
#include "tensor/factory.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

Tensor ranked(int64_t n, int r, DType dtype) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = double((i + 3 * r) % 13) * 0.25;
  return from_vector(v, {n}, dtype);
}

// Runs `op` on CPU tensors and on Sim tensors (on fresh communicators, so
// each ledger holds that run only) and compares results and traffic.
template <typename Op>
void check_like_cpu(Communicator& world, Op op) {
  Communicator cc = world.split(0, world.rank()), cs = world.split(0, world.rank());
  const std::vector<Tensor> cpu = op(cc, Device::CPU);
  const std::vector<Tensor> sim = op(cs, Device::Sim);
  REQUIRE(cpu.size() == sim.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    CHECK(sim[i].device() == Device::Sim);
    CHECK(sim[i].to_vector() == cpu[i].to_vector());
  }
  CHECK(cs.traffic() == cc.traffic());
}

}  // namespace

TEST_CASE("collectives on Sim tensors equal the CPU's, staged through the host",
          "[mpi][comm][device]") {
  Communicator world = Communicator::world();
  const int r = world.rank(), d = world.size();
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::I32}) {
    INFO(dtype_name(dt));
    for (bool blocking : {true, false}) {
      INFO("blocking " << blocking);
      check_like_cpu(world, [&](Communicator& c, Device dev) {
        Tensor a = ranked(37, r, dt).to(dev), b = ranked(37, r + 1, dt).to(dev);
        if (blocking) {
          c.all_reduce(a, ReduceOp::Sum);
          c.all_reduce(b, dt == DType::I32 ? ReduceOp::Max : ReduceOp::Avg);
        } else {
          Work wa = c.iall_reduce(a, ReduceOp::Sum);
          Work wb = c.iall_reduce(b, dt == DType::I32 ? ReduceOp::Max : ReduceOp::Avg);
          wb.wait();
          wa.wait();
        }
        Tensor in = ranked(8 * d, r, dt).to(dev);
        Tensor rs = Tensor::empty({8}, dt, dev), ag = Tensor::empty({8 * d}, dt, dev);
        Tensor bc = ranked(11, r, dt).to(dev);
        if (blocking) {
          c.reduce_scatter(in, rs, ReduceOp::Sum);
          c.all_gather(rs, ag);
          c.broadcast(bc, d - 1);
        } else {
          Work w1 = c.ireduce_scatter(in, rs, ReduceOp::Sum);
          w1.wait();
          Work w2 = c.iall_gather(rs, ag);
          Work w3 = c.ibroadcast(bc, d - 1);
          w2.wait();
          w3.wait();
        }
        return std::vector<Tensor>{a, b, rs, ag, bc};
      });
    }
  }
}

TEST_CASE("send/recv of Sim tensors around the ring", "[mpi][comm][device]") {
  Communicator world = Communicator::world();
  const int r = world.rank(), d = world.size();
  if (d == 1) return;
  check_like_cpu(world, [&](Communicator& c, Device dev) {
    Tensor out = ranked(19, r, DType::F32).to(dev);
    Tensor in = Tensor::empty({19}, DType::F32, dev);
    Work wr = c.irecv(in, (r + d - 1) % d, 3);
    Work ws = c.isend(out, (r + 1) % d, 3);
    ws.wait();
    wr.wait();
    return std::vector<Tensor>{in};
  });
}

TEST_CASE("a one-rank group copies a Sim tensor on the device", "[mpi][comm][device]") {
  Communicator world = Communicator::world();
  Communicator alone = world.split(world.rank(), 0);
  Tensor in = ranked(6, 2, DType::F32).to(Device::Sim);
  Tensor out = Tensor::empty({6}, DType::F32, Device::Sim);
  alone.all_gather(in, out);
  CHECK(out.to_vector() == in.to_vector());
  CHECK(alone.traffic().collective_calls() == 0);
}
