// Every [cuda] test that needs a GPU starts with MS_SKIP_WITHOUT_CUDA(): on a
// machine without one (CI, the CPU-only build host) the test is reported as
// skipped, visibly, instead of passing silently or failing. On the GPU
// machine, MS_REQUIRE_GPU=1 (scripts/gpu-check.sh sets it) turns every such
// skip into a failure: a driver that does not load, or a device hidden by
// CUDA_VISIBLE_DEVICES, would otherwise turn the whole [cuda] stage green
// without running one kernel (Catch2 v2 has no SKIP, so a skip is a pass).
// No CUDA header here: tests/test_gpu_plumbing.cpp checks the decision in
// every build.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/device.h"
#include "tests/catch_compat.h"

namespace ms::test {

enum class GpuVerdict { Run, Skip, Fail };

// What a test that needs a GPU does. require_gpu: MS_REQUIRE_GPU's value
// (nullptr when unset); anything but unset, "" or "0" demands the GPU.
inline GpuVerdict gpu_verdict(bool have_gpu, const char* require_gpu) {
  if (have_gpu) return GpuVerdict::Run;
  const bool required =
      require_gpu != nullptr && *require_gpu != '\0' && std::strcmp(require_gpu, "0") != 0;
  return required ? GpuVerdict::Fail : GpuVerdict::Skip;
}

inline GpuVerdict gpu_verdict_here() {
  return gpu_verdict(::ms::cuda_device_count() > 0, std::getenv("MS_REQUIRE_GPU"));
}

}  // namespace ms::test

#ifdef MS_CATCH2_V3
#define MS_GPU_SKIP_(why) SKIP(why)
#else
// Catch2 v2 has no SKIP: a warning in the output, and leave the test.
#define MS_GPU_SKIP_(why)       \
  do {                          \
    WARN("SKIPPED: " << (why)); \
    return;                     \
  } while (0)
#endif

// Skips (or, under MS_REQUIRE_GPU=1, fails) when `have_gpu` is false.
#define MS_SKIP_UNLESS_GPU(have_gpu, why)                                                     \
  do {                                                                                        \
    switch (::ms::test::gpu_verdict((have_gpu), std::getenv("MS_REQUIRE_GPU"))) {             \
      case ::ms::test::GpuVerdict::Run:                                                       \
        break;                                                                                \
      case ::ms::test::GpuVerdict::Fail:                                                      \
        FAIL("MS_REQUIRE_GPU=1 is set but this test cannot use a GPU: " << std::string(why)); \
        break;                                                                                \
      case ::ms::test::GpuVerdict::Skip:                                                      \
        MS_GPU_SKIP_(std::string(why));                                                       \
    }                                                                                         \
  } while (0)

#define MS_SKIP_WITHOUT_CUDA()                      \
  MS_SKIP_UNLESS_GPU(::ms::cuda_device_count() > 0, \
                     "no CUDA device (cudaGetDeviceCount failed or found none)")
