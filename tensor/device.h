// Where a tensor's bytes live. Ops check the device and call the cpu:: or
// cuda:: kernel of the same signature (dispatch is explicit; see
// docs/architecture.md). The cuda:: side exists in a CUDA build (make CUDA=1).
#pragma once

namespace ms {

// Sim is the simulated device (`--device sim`): its bytes are host memory,
// but to every check it is not the CPU. Ops dispatch through the device path
// (and there call the cpu:: twins), host_data() refuses its tensors, and data
// reaches it only through to(). A run on Sim therefore exercises every line of
// the GPU path except the kernels themselves, on a machine without a GPU.
enum class Device { CPU, CUDA, Sim };

inline const char* device_name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
    case Device::Sim: return "sim";
  }
  return "?";
}

// True when this build has the CUDA backend (make CUDA=1).
bool cuda_built();
// Visible CUDA devices: 0 in a CPU build, and 0 in a CUDA build on a machine
// without a driver or GPU (never an error: callers pick the CPU then).
int cuda_device_count();

}  // namespace ms
