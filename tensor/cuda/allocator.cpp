#include "tensor/cuda/allocator.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "tensor/cuda/runtime.h"
#include "tensor/error.h"

namespace ms::cuda {

namespace {

struct DeviceCache {
  std::map<size_t, std::vector<void*>> free;  // bucket size -> cached blocks
  AllocatorStats stats;
};

std::mutex g_mu;
std::vector<DeviceCache>& caches() {
  static auto* c = new std::vector<DeviceCache>();  // outlives static tensors
  if (c->empty()) c->resize(std::max(device_count(), 1));
  return *c;
}

DeviceCache& cache_of(int device) {
  auto& c = caches();
  MS_CHECK(device >= 0 && device < static_cast<int>(c.size()), "CUDA allocator: device ", device,
           " does not exist (", device_count(), " visible)");
  return c[device];
}

void release_cached(DeviceCache& c, int device) {
  int prev = 0;
  MS_CUDA_CHECK(cudaGetDevice(&prev));
  MS_CUDA_CHECK(cudaSetDevice(device));
  // Blocks were freed in stream order; make sure their last kernels are done.
  MS_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
  for (auto& [size, blocks] : c.free) {
    for (void* p : blocks) MS_CUDA_CHECK(cudaFree(p));
    c.stats.reserved -= size * blocks.size();
  }
  c.free.clear();
  MS_CUDA_CHECK(cudaSetDevice(prev));
}

}  // namespace

size_t round_size(size_t n) {
  constexpr size_t kSmall = size_t(1) << 20;
  if (n <= kSmall) return (std::max<size_t>(n, 1) + 511) / 512 * 512;
  size_t p = kSmall;
  while (p < n) p <<= 1;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

void* allocate(size_t nbytes, int device) {
  size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceCache& c = cache_of(device);
  void* p = nullptr;
  auto it = c.free.find(size);
  if (it != c.free.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    ++c.stats.cache_hits;
  } else {
    int prev = 0;
    MS_CUDA_CHECK(cudaGetDevice(&prev));
    MS_CUDA_CHECK(cudaSetDevice(device));
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      cudaGetLastError();
      release_cached(c, device);
      err = cudaMalloc(&p, size);
    }
    cudaSetDevice(prev);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw Error(str_cat("CUDA out of memory: allocating ", nbytes, " bytes on device ", device,
                          " (", c.stats.allocated, " bytes in use, ", c.stats.reserved,
                          " reserved); use a smaller batch or sequence length, ZeRO, or "
                          "activation checkpointing"));
    }
    check(err, "cudaMalloc", __FILE__, __LINE__);
    ++c.stats.cuda_mallocs;
    c.stats.reserved += size;
  }
  c.stats.allocated += size;
  c.stats.peak_allocated = std::max(c.stats.peak_allocated, c.stats.allocated);
  return p;
}

void deallocate(void* p, size_t nbytes, int device) {
  if (p == nullptr) return;
  size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceCache& c = cache_of(device);
  c.free[size].push_back(p);
  c.stats.allocated -= size;
}

void empty_cache(int device) {
  std::lock_guard<std::mutex> lock(g_mu);
  release_cached(cache_of(device), device);
}

AllocatorStats stats(int device) {
  std::lock_guard<std::mutex> lock(g_mu);
  return cache_of(device).stats;
}

void reset_peak(int device) {
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceCache& c = cache_of(device);
  c.stats.peak_allocated = c.stats.allocated;
}

Scratch::Scratch(size_t nbytes, cudaStream_t s) : nbytes_(nbytes), device_(current_device()) {
  MS_CHECK(s == stream(device_), "CUDA scratch: the launch is on a stream that is not device ",
           device_,
           "'s main stream; the caching allocator reuses freed blocks in main-stream order only "
           "(pass cuda::current_stream(); docs/architecture.md, \"Streams\")");
  p_ = allocate(nbytes, device_);
}

Scratch::~Scratch() {
  deallocate(p_, nbytes_, device_);
}

}  // namespace ms::cuda
