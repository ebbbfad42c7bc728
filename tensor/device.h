// Where a tensor's bytes live. Ops check the device and call the cpu:: or
// cuda:: kernel of the same signature (dispatch is explicit; see
// docs/architecture.md). The cuda:: kernels are planned.
#pragma once

namespace ms {

enum class Device { CPU, CUDA };

inline const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

// True when this build has the CUDA backend (make CUDA=1).
bool cuda_built();

}  // namespace ms
