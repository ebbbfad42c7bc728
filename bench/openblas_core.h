// Which OpenBLAS kernel a peer runs. OpenBLAS picks its kernels from the CPU
// model, and Debian's 0.3.21 does not know every newer one: a VM reporting a
// generic "Intel Xeon Processor" gets the Prescott (SSE3) kernels
// (OPENBLAS_VERBOSE=2 says "Core: Prescott"; measured here: torch's
// 2048x768x256 matmul at 11 GFLOP/s, 40 with the right core type). A peer held
// to the wrong kernel is no peer, so unless OPENBLAS_CORETYPE is set, peers
// get the core type of the ISA our gemm detected.
#pragma once
#include <cstdlib>
#include <string>

#include "tensor/cpu/gemm.h"

inline std::string openblas_coretype() {
  if (const char* set = std::getenv("OPENBLAS_CORETYPE")) return set;
  const std::string isa = ms::cpu::gemm_f32_isa();
  return isa == "avx512" ? "SkylakeX" : isa == "avx2" ? "Haswell" : "";
}
