#include "tensor/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "tensor/error.h"

#ifdef MS_CUDA
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/runtime.h"
#endif

namespace ms {

static std::atomic<size_t> g_cpu_bytes{0};
static std::atomic<size_t> g_sim_bytes{0};

size_t cpu_bytes_allocated() {
  return g_cpu_bytes.load();
}
size_t sim_bytes_allocated() {
  return g_sim_bytes.load();
}

#ifndef MS_CUDA
// The CUDA build defines these in tensor/cuda/runtime.cpp.
bool cuda_built() {
  return false;
}
int cuda_device_count() {
  return 0;
}
CudaMemoryStats cuda_memory_stats(int) {
  return {};
}
#else
CudaMemoryStats cuda_memory_stats(int device) {
  if (device < 0 || device >= cuda::device_count()) return {};
  cuda::AllocatorStats s = cuda::stats(device);
  return {s.allocated, s.reserved, s.peak_allocated};
}
#endif

namespace {

// A caching allocator, as PyTorch's: a training step allocates and frees the
// same activation sizes every iteration, and fresh large blocks come from mmap
// with a page fault per 4 KB on first touch (measured: ~20% of a CPU step).
// Freed blocks are kept in per-size free lists and handed out again. Sizes are
// rounded up (to 64 B; to 1/8 of the power of two above 64 KB) so near sizes
// share blocks; at most kMaxCachedBytes stay cached.
class CachingAllocator {
 public:
  static size_t round_size(size_t n) {
    if (n <= 65536) return (std::max<size_t>(n, 1) + 63) / 64 * 64;
    size_t p = 65536;
    while (p < n) p <<= 1;
    size_t step = p / 8;
    return (n + step - 1) / step * step;
  }
  void* allocate(size_t rounded) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(rounded);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= rounded;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, rounded);
    if (p == nullptr) {  // release the cache and try once more
      release_all();
      p = std::aligned_alloc(64, rounded);
    }
    return p;
  }
  void deallocate(void* p, size_t rounded) {
    std::lock_guard<std::mutex> lock(mu_);
    if (kBypassCache || cached_bytes_ + rounded > kMaxCachedBytes) {
      std::free(p);
      return;
    }
    free_[rounded].push_back(p);
    cached_bytes_ += rounded;
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_bytes_ = 0;
  }
  ~CachingAllocator() { release_all(); }

 private:
  static constexpr size_t kMaxCachedBytes = size_t(2) << 30;
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer every block goes back to malloc, so a use after
  // free is reported instead of landing in a recycled block.
  static constexpr bool kBypassCache = true;
#else
  static constexpr bool kBypassCache = false;
#endif
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

CachingAllocator& cpu_allocator() {
  static CachingAllocator* allocator = new CachingAllocator();  // outlives static tensors
  return *allocator;
}

}  // namespace

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), capacity_(nbytes), device_(device) {
  if (device == Device::CUDA) {
#ifdef MS_CUDA
    device_index_ = cuda::current_device();  // an ms::Error when there is no GPU
#else
    MS_CHECK(false, "Storage: device ", device_name(device),
             " is not available in this build (build with make CUDA=1)");
#endif
  }
  restore_data();
}

void Storage::restore_data() {
  if (data_ != nullptr) return;
  nbytes_ = capacity_;
#ifdef MS_CUDA
  if (device_ == Device::CUDA) {
    data_ = cuda::allocate(nbytes_, device_index_);
    return;
  }
#endif
  // 64-byte alignment: one cache line and one AVX-512 vector.
  // Device::Sim takes host memory from the same cache but counts it as the
  // device's, as the CUDA allocator's counters would.
  data_ = cpu_allocator().allocate(CachingAllocator::round_size(nbytes_));
  MS_CHECK(data_ != nullptr, "Storage: out of memory allocating ", nbytes_, " bytes");
  (device_ == Device::Sim ? g_sim_bytes : g_cpu_bytes) += nbytes_;
}

void Storage::release_data() {
  if (data_ == nullptr) return;
#ifdef MS_CUDA
  if (device_ == Device::CUDA) {
    cuda::deallocate(data_, nbytes_, device_index_);
    data_ = nullptr;
    nbytes_ = 0;
    return;
  }
#endif
  cpu_allocator().deallocate(data_, CachingAllocator::round_size(nbytes_));
  (device_ == Device::Sim ? g_sim_bytes : g_cpu_bytes) -= nbytes_;
  data_ = nullptr;
  nbytes_ = 0;
}

Storage::~Storage() {
  release_data();
}

}  // namespace ms
