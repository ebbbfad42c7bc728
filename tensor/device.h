// Where a tensor's bytes live. Ops check the device and call the cpu:: or
// cuda:: kernel of the same signature (dispatch is explicit; see
// docs/architecture.md). The cuda:: side exists in a CUDA build (make CUDA=1).
#pragma once

namespace ms {

enum class Device { CPU, CUDA };

inline const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

// True when this build has the CUDA backend (make CUDA=1).
bool cuda_built();
// Visible CUDA devices: 0 in a CPU build, and 0 in a CUDA build on a machine
// without a driver or GPU (never an error: callers pick the CPU then).
int cuda_device_count();

}  // namespace ms
