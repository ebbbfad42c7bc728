// Where a tensor's bytes live. Ops find their device once and call each
// kernel through the explicit switch of tensor/device_kernels.h (the cpu::
// kernel, or the cuda:: twin of the same signature in a CUDA build, make
// CUDA=1; docs/architecture.md, "Dispatch on a device").
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
