#include "tensor/storage.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "tensor/error.h"

namespace ms {

static std::atomic<size_t> g_cpu_bytes{0};

size_t cpu_bytes_allocated() { return g_cpu_bytes.load(); }

#ifndef MS_CUDA
bool cuda_built() { return false; }
#endif

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  MS_CHECK(device == Device::CPU, "Storage: device ", device_name(device),
           " is not available in this build (build with make CUDA=1)");
  // 64-byte alignment: one cache line and one AVX-512 vector.
  size_t rounded = (nbytes + 63) / 64 * 64;
  data_ = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  MS_CHECK(data_ != nullptr, "Storage: out of memory allocating ", nbytes, " bytes");
  g_cpu_bytes += nbytes_;
}

Storage::~Storage() {
  std::free(data_);
  g_cpu_bytes -= nbytes_;
}

}  // namespace ms
