// The host-side decisions of the GPU path, tested in every build (make test,
// no GPU needed): which GPU a rank takes, and when two ranks would share one
// (parallel/comm/nccl_backend.h).
#include <string>
#include <vector>

#include "catch_compat.h"
#include "parallel/comm/nccl_backend.h"

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
