// A Storage is one allocation; many tensors (views) may share it. CPU bytes
// come from a caching allocator in storage.cpp, CUDA bytes from the one in
// tensor/cuda/allocator.h, on the device current when the Storage is made.
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace ms {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  int device_index() const { return device_index_; }  // the GPU for Device::CUDA; 0 on the CPU

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_ = Device::CPU;
  int device_index_ = 0;
};

// Bytes currently allocated by Storage objects on the CPU (for memory tables).
size_t cpu_bytes_allocated();

// The CUDA caching allocator's counters for one GPU, for memory tables; all
// zero in a CPU build or without a GPU.
struct CudaMemoryStats {
  size_t allocated = 0;       // bytes held by live tensors (bucket-rounded)
  size_t reserved = 0;        // bytes taken from the driver (live + cached)
  size_t peak_allocated = 0;  // high-water mark of `allocated`
};
CudaMemoryStats cuda_memory_stats(int device = 0);

}  // namespace ms
