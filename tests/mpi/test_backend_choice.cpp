// Choosing the Communicator's backend: MS_BACKEND and BackendKind, and the
// errors when the choice cannot be served. NCCL's collectives themselves are
// tested on a GPU, on one rank, by tests/cuda/test_nccl.cpp.
#include <cstdlib>
#include <string>

#include "autograd/ops.h"
#include "parallel/comm/communicator.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"

using namespace ms;
using ms::test::error_of;
using ms::test::has;

namespace {

// MS_BACKEND set (or unset, for nullptr) for one scope, the same on every rank.
class BackendEnv {
 public:
  explicit BackendEnv(const char* value) {
    const char* old = std::getenv("MS_BACKEND");
    had_ = old != nullptr;
    if (had_) saved_ = old;
    if (value)
      setenv("MS_BACKEND", value, 1);
    else
      unsetenv("MS_BACKEND");
  }
  ~BackendEnv() {
    if (had_)
      setenv("MS_BACKEND", saved_.c_str(), 1);
    else
      unsetenv("MS_BACKEND");
  }

 private:
  bool had_ = false;
  std::string saved_;
};

std::string world_backend_name() {
  return Communicator::world().backend().name();
}

}  // namespace

TEST_CASE("MS_BACKEND chooses the backend: mpi when unset, empty or mpi", "[mpi][comm][backend]") {
  std::string unset, empty, mpi;
  {
    BackendEnv env(nullptr);
    unset = world_backend_name();
  }
  {
    BackendEnv env("");
    empty = world_backend_name();
  }
  {
    BackendEnv env("mpi");
    mpi = world_backend_name();
    Communicator world = Communicator::world();
    Tensor t = ones({3});
    world.all_reduce(t);
    CHECK(t.to_vector() == std::vector<double>(3, double(world.size())));
  }
  CHECK(unset == "mpi");
  CHECK(empty == "mpi");
  CHECK(mpi == "mpi");
  CHECK(std::string(Communicator::world(BackendKind::MPI).backend().name()) == "mpi");
  CHECK(std::string(backend_kind_name(BackendKind::NCCL)) == "nccl");
}

TEST_CASE("MS_BACKEND with an unknown value is an error naming the valid ones",
          "[mpi][comm][backend]") {
  BackendEnv env("gloo");
  const std::string err = error_of([] { Communicator::world(); });
  CHECK(has(err, "MS_BACKEND='gloo'"));
  CHECK(has(err, "mpi"));
  CHECK(has(err, "nccl"));
}

TEST_CASE("NCCL in a CPU build is an error saying to build with make CUDA=1",
          "[mpi][comm][backend]") {
  if (cuda_built()) {
    WARN("skipped: this is a CUDA build (the next test case covers it)");
    return;
  }
  BackendKind from_env;
  std::string via_env, direct;
  {
    BackendEnv env("nccl");
    from_env = backend_from_env();
    via_env = error_of([] { Communicator::world(); });
  }
  direct = error_of([] { Communicator::world(BackendKind::NCCL); });
  CHECK(from_env == BackendKind::NCCL);
  CHECK(has(via_env, "make CUDA=1"));
  CHECK(has(via_env, "MS_BACKEND=mpi"));
  CHECK(has(direct, "make CUDA=1"));
}

// In a CUDA build every rank agrees: either each has a GPU of its own (the
// world is NCCL's), or all raise the same error naming the way out. On one
// H200 at 2 ranks it is the "two ranks on one GPU" refusal.
TEST_CASE("NCCL with more ranks than GPUs is refused on every rank, saying how to run",
          "[mpi][comm][backend][cuda]") {
  if (!cuda_built()) {
    WARN("skipped: a CPU build (the test case before covers it)");
    return;
  }
  std::string name;
  const std::string err = error_of([&] { name = Communicator::world(BackendKind::NCCL).backend().name(); });
  if (err == "(no error)") {
    CHECK(name == "nccl");
  } else {
    INFO(err);
    CHECK(has(err, "MS_BACKEND=mpi"));
    CHECK((has(err, "invalid usage") || has(err, "no CUDA device")));
  }
  Communicator world = Communicator::world(BackendKind::MPI);
  Tensor failed = from_vector(std::vector<int32_t>{err == "(no error)" ? 0 : 1}, {1});
  world.all_reduce(failed, ReduceOp::Sum);
  const int32_t n = failed.host_data<int32_t>()[0];
  CHECK((n == 0 || n == world.size()));  // agreed: all or none
}
