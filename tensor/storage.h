// A Storage is one allocation; many tensors (views) may share it.
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

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_ = Device::CPU;
};

// Bytes currently allocated by Storage objects on the CPU (for memory tables).
size_t cpu_bytes_allocated();

}  // namespace ms
