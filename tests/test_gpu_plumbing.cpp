// The host-side decisions of the GPU path, tested in every build (make test,
// no GPU needed): which GPU a rank takes, when two ranks would share one
// (parallel/comm/nccl_backend.h), and when a [cuda] test without a GPU skips
// and when MS_REQUIRE_GPU=1 makes it fail (tests/cuda/cuda_skip.h).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "catch_compat.h"
#include "parallel/comm/nccl_backend.h"
#include "tests/cuda/cuda_skip.h"

using namespace ms;

TEST_CASE("one GPU per rank: local rank modulo the GPUs the rank sees", "[gpu-plumbing]") {
  // Every GPU of an 8-GPU node visible: rank r takes GPU r.
  for (int r = 0; r < 8; ++r) CHECK(local_gpu_index(r, 8) == r);
  // CUDA_VISIBLE_DEVICES=<local rank>: each rank sees one device, index 0
  // (this launch was once refused as "more ranks than GPUs").
  for (int r = 0; r < 8; ++r) CHECK(local_gpu_index(r, 1) == 0);
  // Two visible per rank, four ranks: 0, 1, 0, 1; the UUIDs decide if that is shared.
  CHECK(local_gpu_index(2, 2) == 0);
  CHECK(local_gpu_index(3, 2) == 1);
}

TEST_CASE("two ranks on one GPU are found by UUID, whatever each rank's device count",
          "[gpu-plumbing]") {
  CHECK(shared_gpu_problem({"GPU-a", "GPU-b", "GPU-c"}).empty());
  CHECK(shared_gpu_problem({"GPU-a"}).empty());
  // Ranks without a GPU have their own error; "" is no GPU, not a shared one.
  CHECK(shared_gpu_problem({"", ""}).empty());
  const std::string p = shared_gpu_problem({"GPU-a", "GPU-b", "GPU-a", "GPU-a"});
  INFO(p);
  CHECK(p.find("local ranks 0, 2, 3") != std::string::npos);
  CHECK(p.find("GPU-a") != std::string::npos);
}

TEST_CASE("MS_REQUIRE_GPU=1 turns a missing GPU from a skip into a failure", "[gpu-plumbing]") {
  using ms::test::gpu_verdict;
  using ms::test::GpuVerdict;
  CHECK(gpu_verdict(true, nullptr) == GpuVerdict::Run);
  CHECK(gpu_verdict(true, "1") == GpuVerdict::Run);
  CHECK(gpu_verdict(false, nullptr) == GpuVerdict::Skip);  // CI, this build host
  CHECK(gpu_verdict(false, "") == GpuVerdict::Skip);
  CHECK(gpu_verdict(false, "0") == GpuVerdict::Skip);
  CHECK(gpu_verdict(false, "1") == GpuVerdict::Fail);  // scripts/gpu-check.sh
  CHECK(gpu_verdict(false, "yes") == GpuVerdict::Fail);
}

// Run by the case below, in a child process of this same binary.
TEST_CASE("probe: a test that needs a GPU", "[.][gpu-skip-probe]") {
  MS_SKIP_WITHOUT_CUDA();
  CHECK(ms::cuda_device_count() > 0);
}

namespace {

struct Child {
  int code;
  std::string output;
};

// This test binary again, on the hidden probe, with MS_REQUIRE_GPU as given.
Child run_probe(const char* require_gpu) {
  char self[4096] = {};
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  REQUIRE(n > 0);
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 ";
  cmd += require_gpu ? std::string("MS_REQUIRE_GPU=") + require_gpu : "env -u MS_REQUIRE_GPU";
  cmd += " timeout 60 " + std::string(self) + " '[gpu-skip-probe]' 2>&1";
  Child c{-1, ""};
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  while (size_t k = fread(buf, 1, sizeof buf, pipe)) c.output.append(buf, k);
  const int status = pclose(pipe);
  c.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return c;
}

}  // namespace

TEST_CASE("a [cuda] test without a GPU: skipped by default, failed under MS_REQUIRE_GPU=1",
          "[gpu-plumbing]") {
  const Child plain = run_probe(nullptr), zero = run_probe("0"), required = run_probe("1");
  INFO("unset:\n"
       << plain.output << "\nMS_REQUIRE_GPU=0:\n"
       << zero.output << "\nMS_REQUIRE_GPU=1:\n"
       << required.output);
  if (ms::cuda_device_count() > 0) {  // a CUDA build on a GPU: the probe runs and passes
    CHECK(plain.code == 0);
    CHECK(required.code == 0);
    return;
  }
  // Catch2 v3 ends a run whose every test skipped with code 4; v2 has no skip.
  for (const Child* c : {&plain, &zero}) {
    CHECK((c->code == 0 || c->code == 4));
    CHECK(c->output.find("no CUDA device") != std::string::npos);
  }
  CHECK(required.code != 0);
  CHECK(required.code != 4);
  CHECK(required.output.find("MS_REQUIRE_GPU=1 is set") != std::string::npos);
}
