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

  // Give the bytes back but keep the object, so every tensor viewing it stays
  // a valid (unreadable) view; nbytes() is 0 until restore_data() allocates
  // the same size again (uninitialized) under the same Storage. PyTorch FSDP
  // does this to its unsharded flat parameter (_free_storage/_alloc_storage,
  // storage.resize_(0) and back): the autograd graph saved views of the
  // gathered parameters, and ZeRO-3 refills the very storage they point at
  // before the block's backward (parallel/zero/stage3.h).
  void release_data();
  void restore_data();
  bool has_data() const { return data_ != nullptr; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  size_t capacity_ = 0;  // nbytes_ while the data is there; kept across release_data()
  Device device_ = Device::CPU;
  int device_index_ = 0;
};

// Bytes currently allocated by Storage objects on the CPU (for memory tables).
size_t cpu_bytes_allocated();
// Bytes currently allocated on the simulated device (Device::Sim; host memory).
size_t sim_bytes_allocated();

// The CUDA caching allocator's counters for one GPU, for memory tables; all
// zero in a CPU build or without a GPU.
struct CudaMemoryStats {
  size_t allocated = 0;       // bytes held by live tensors (bucket-rounded)
  size_t reserved = 0;        // bytes taken from the driver (live + cached)
  size_t peak_allocated = 0;  // high-water mark of `allocated`
};
CudaMemoryStats cuda_memory_stats(int device = 0);

}  // namespace ms
