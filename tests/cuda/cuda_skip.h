// Every [cuda] test that needs a GPU starts with MS_SKIP_WITHOUT_CUDA(): on a
// machine without one (CI, the CPU-only build host) the test is reported as
// skipped, visibly, instead of passing silently or failing.
#pragma once
#include <cstdio>

#include "tensor/device.h"
#include "tests/catch_compat.h"

#ifdef MS_CATCH2_V3
#define MS_SKIP_WITHOUT_CUDA() \
  if (::ms::cuda_device_count() == 0) SKIP("skipped: no CUDA device")
#else
// Catch2 v2 has no SKIP: print the line and leave the test (no assertions run).
#define MS_SKIP_WITHOUT_CUDA()                                           \
  if (::ms::cuda_device_count() == 0) {                                  \
    std::printf("skipped: no CUDA device: %s\n",                         \
                Catch::getResultCapture().getCurrentTestName().c_str()); \
    return;                                                              \
  }
#endif
