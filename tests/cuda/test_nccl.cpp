// The NCCL backend on one rank ([cuda][nccl]): every op launched, synchronised
// and its bytes where they belong; send/recv to oneself, which only works when
// the pair runs as one NCCL group; CPU tensors going through MPI; subgroups;
// the ledger. One rank, because NCCL refuses two ranks of one communicator on
// one GPU: multi-rank GPU runs use the MPI backend, and the refusal itself is
// tested by tests/mpi/test_backend_choice.cpp. Without a device (or under
// mpirun with several ranks) every case says it skipped.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/communicator.h"
#include "parallel/comm/nccl_backend.h"
#include "parallel/comm/runtime.h"
#include "tensor/cuda/elementwise.h"
#include "tensor/cuda/runtime.h"
#include "tests/catch_compat.h"
#include "tests/cuda/cuda_skip.h"
#include "tests/mpi/error_capture.h"

using namespace ms;
using ms::test::error_of;
using ms::test::has;

namespace {

// The backend bootstraps over MPI: start it when the runner has not
// (tests/main.cpp does not; tests/mpi/main.cpp does, and then this does nothing).
DistributedRuntime& mpi_runtime() {
  static DistributedRuntime runtime;
  return runtime;
}

bool has_device(std::string* why = nullptr) {
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc == cudaSuccess && n > 0) return true;
  if (why) *why = rc != cudaSuccess ? cudaGetErrorString(rc) : "cudaGetDeviceCount found 0";
  return false;
}

// No device: skipped, or failed under MS_REQUIRE_GPU=1 (tests/cuda/cuda_skip.h).
// Several ranks: skipped (NCCL refuses two ranks on one GPU; run without mpirun).
#define SKIP_WITHOUT_DEVICE()                                                      \
  do {                                                                             \
    std::string why_;                                                              \
    MS_SKIP_UNLESS_GPU(has_device(&why_), "no CUDA device (" + why_ + ")");        \
    if (mpi_runtime().size() > 1)                                                  \
      MS_GPU_SKIP_(                                                                \
          std::string("the NCCL cases run on one rank (NCCL refuses two ranks on " \
                      "one GPU; run without mpirun)"));                            \
  } while (0)

void check_cuda(cudaError_t rc) {
  INFO(cudaGetErrorString(rc));
  REQUIRE(rc == cudaSuccess);
}

// A CUDA tensor holding `v` (elements of T: float, int32_t, or uint16_t bits).
template <typename T>
Tensor upload(const std::vector<T>& v, DType dtype) {
  Tensor t = Tensor::empty({int64_t(v.size())}, dtype, Device::CUDA);
  // On the main stream, as every copy (the stream rule): the collective's
  // event ordering is what these cases check, so nothing here syncs the device.
  cuda::copy_to_device(t.device_raw_data(), v.data(), v.size() * sizeof(T),
                       t.storage()->device_index());
  return t;
}

template <typename T>
std::vector<T> download(const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  cuda::copy_to_host(v.data(), t.device_raw_data(), t.nbytes(), t.storage()->device_index());
  return v;
}

std::vector<float> iota_f(int n, float start) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = start + 0.25f * float(i % 37) - float(i % 5);
  return v;
}

Communicator nccl_world() {
  mpi_runtime();
  Communicator world = Communicator::world(BackendKind::NCCL);
  world.set_timeout(60);  // a hang in these cases is a bug: end it with the op's name
  return world;
}

}  // namespace

TEST_CASE("nccl: without a CUDA device the backend is refused, naming MS_BACKEND=mpi",
          "[cuda][nccl]") {
  if (has_device()) {
    WARN("skipped: this machine has a CUDA device (the cases below use it)");
    return;
  }
  mpi_runtime();
  const std::string err = error_of([] { Communicator::world(BackendKind::NCCL); });
  INFO(err);
  CHECK(has(err, "no CUDA device"));
  CHECK(has(err, "MS_BACKEND=mpi"));
}

TEST_CASE("nccl: one-rank collectives move every byte, f32 / bf16 / f16 / f64 / i32",
          "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  REQUIRE(std::string(world.backend().name()) == "nccl");
  REQUIRE(world.size() == 1);
  const int n = 1000 + 3;  // odd: no element count NCCL could round to a vector width

  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
    const std::vector<float> v = iota_f(n, -3);
    Tensor t = upload(v, DType::F32);
    world.all_reduce(t, op);  // one rank: the reduction of one value is itself
    CHECK(download<float>(t) == v);
  }
  std::vector<uint16_t> bits(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) bits[size_t(i)] = f32_to_bf16(0.5f * float(i) - 7.f);
  Tensor b = upload(bits, DType::BF16);
  world.all_reduce(b, ReduceOp::Avg);  // natively in bf16, no f32 buffer
  CHECK(download<uint16_t>(b) == bits);
  Tensor h = upload(bits, DType::F16);  // any 16-bit pattern travels as is
  world.broadcast(h, 0);
  CHECK(download<uint16_t>(h) == bits);
  std::vector<int32_t> ints(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ints[size_t(i)] = i * 7 - 500;
  Tensor k = upload(ints, DType::I32);
  world.all_reduce(k, ReduceOp::Max);
  CHECK(download<int32_t>(k) == ints);
  std::vector<double> dbl(static_cast<size_t>(n), 0.1);
  Tensor d = upload(dbl, DType::F64);
  world.all_reduce(d, ReduceOp::Sum);
  CHECK(download<double>(d) == dbl);

  // Into separate buffers: out starts as zeros, so a copy that did not happen shows.
  const std::vector<float> v = iota_f(n, 2);
  Tensor in = upload(v, DType::F32);
  Tensor out = upload(std::vector<float>(size_t(n), 0.f), DType::F32);
  world.reduce_scatter(in, out, ReduceOp::Sum);
  CHECK(download<float>(out) == v);
  Tensor gathered = upload(std::vector<float>(size_t(n), 0.f), DType::F32);
  world.all_gather(in, gathered);
  CHECK(download<float>(gathered) == v);
}

TEST_CASE("nccl: isend/irecv to oneself complete as one group, in either order", "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  const std::vector<float> v = iota_f(4099, 1);
  for (bool recv_first : {false, true}) {
    Tensor src = upload(v, DType::F32);
    Tensor dst = upload(std::vector<float>(v.size(), 0.f), DType::F32);
    // Launched one by one on one stream, the send would wait for a receive
    // queued behind it; the backend launches them together at wait().
    Work r, s;
    if (recv_first) {
      r = world.irecv(dst, 0, 5);
      s = world.isend(src, 0, 5);
    } else {
      s = world.isend(src, 0, 5);
      r = world.irecv(dst, 0, 5);
    }
    s.wait();
    r.wait();
    CHECK(download<float>(dst) == v);
  }
  // Nonblocking collectives: test() polls, wait() finishes.
  Tensor t = upload(v, DType::F32);
  Work w = world.iall_reduce(t, ReduceOp::Sum);
  while (!w.test()) {
  }
  w.wait();
  CHECK(download<float>(t) == v);
}

TEST_CASE("nccl: CPU tensors on an NCCL communicator go through MPI", "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  Tensor cpu = full({5}, 3);
  world.all_reduce(cpu, ReduceOp::Sum);
  CHECK(cpu.to_vector() == std::vector<double>(5, 3.0));
  world.barrier();
  // One op, one device: a CPU input with a CUDA output is refused by name.
  Tensor out = upload(std::vector<float>(5, 0.f), DType::F32);
  const std::string err = error_of([&] { world.all_gather(cpu, out); });
  INFO(err);
  CHECK(has(err, "all_gather"));
  CHECK(has(err, "one device"));
}

TEST_CASE("nccl: split gives a subgroup its own NCCL communicator", "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  Communicator sub = world.split(0, 0);
  REQUIRE(std::string(sub.backend().name()) == "nccl");
  REQUIRE(sub.size() == 1);
  CHECK(sub.timeout() == world.timeout());
  const std::vector<float> v = iota_f(77, 5);
  Tensor t = upload(v, DType::F32);
  sub.all_reduce(t, ReduceOp::Avg);
  world.all_reduce(t, ReduceOp::Sum);  // both communicators usable side by side
  CHECK(download<float>(t) == v);
}

TEST_CASE("nccl: the ledger counts CUDA reductions in their own dtype (bf16: 2 bytes)",
          "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  Tensor b = upload(std::vector<uint16_t>(64, f32_to_bf16(1.f)), DType::BF16);
  CHECK(world.backend().wire_reduce_dtype(b) == DType::BF16);                       // MPI: f32
  CHECK(world.backend().wire_reduce_dtype(zeros({4}, DType::BF16)) == DType::F32);  // CPU: MPI's
  const Traffic before = world.traffic();
  world.all_reduce(b);
  const Traffic d = world.traffic() - before;
  CHECK(d[CommOp::AllReduce].calls == 1);
  CHECK(d[CommOp::AllReduce].payload == 128);
  CHECK(d[CommOp::AllReduce].sent == 0);  // one rank: a ring of one moves nothing
}

TEST_CASE("nccl: the backend launches on its own stream, never the legacy one", "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  // The stream rule: NCCL's own stream, neither stream 0 nor the main stream.
  const cudaStream_t own = nccl_stream(world);
  CHECK(own != nullptr);
  CHECK(own != cuda::current_stream());
  CHECK(own == nccl_default_stream_of(world));
  CHECK(nccl_stream(world.split(0, 0)) == own);  // one stream: ops run in issue order
  cudaStream_t s = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  set_nccl_stream(world, s);
  CHECK(nccl_stream(world) == s);
  const std::vector<float> v = iota_f(513, 0);
  Tensor t = upload(v, DType::F32);
  world.all_reduce(t);
  CHECK(download<float>(t) == v);
  CHECK_THROWS_WITH(set_nccl_stream(world, nullptr), Catch::Contains("legacy default stream"));
  set_nccl_stream(world, own);
  check_cuda(cudaStreamDestroy(s));
  Communicator mpi = Communicator::world(BackendKind::MPI);
  CHECK_THROWS_WITH(nccl_stream(mpi), Catch::Contains("not nccl"));
}

// The stream rule's first event: NCCL (on its own stream) reads a buffer only
// after the main-stream kernel that wrote it. Through the backend itself:
// Communicator answers a one-rank collective without calling it. A 256 MiB
// fill takes ~0.1 ms on an H100, far longer than NCCL needs to start copying,
// so without the event the gathered copy would hold the old zeros.
TEST_CASE("nccl: a collective waits for the main-stream kernel that wrote its input",
          "[cuda][nccl]") {
  SKIP_WITHOUT_DEVICE();
  Communicator world = nccl_world();
  const int64_t n = int64_t(64) << 20;
  const int dev = cuda::current_device();
  Tensor in = Tensor::empty({n}, DType::F32, Device::CUDA);
  Tensor out = Tensor::empty({n}, DType::F32, Device::CUDA);
  cuda::memset_zero(in.device_raw_data(), in.nbytes(), dev);
  cuda::memset_zero(out.device_raw_data(), out.nbytes(), dev);
  cuda::synchronize(dev);
  for (float value : {7.f, -2.5f}) {
    cuda::fill_n(in.device_raw_data(), DType::F32, n, value, cuda::current_stream());  // queued
    world.backend().all_gather(in, out, true).wait();
    // The second event: the main stream waits for the gather, so this copy sees it.
    const std::vector<float> got = download<float>(out);
    const int64_t wrong =
        std::count_if(got.begin(), got.end(), [&](float x) { return x != value; });
    INFO("elements of the gather that missed the fill: " << wrong << " of " << n);
    CHECK(wrong == 0);
  }
}
