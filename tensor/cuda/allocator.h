// The CUDA caching allocator: cudaMalloc and cudaFree synchronize the device
// and cost ~100 us-1 ms each, and a training step frees and re-allocates the
// same activation sizes every iteration. So, as PyTorch's
// CUDACachingAllocator, freed blocks go to per-size free lists (per device)
// and are handed out again without cudaFree. Sizes are rounded into buckets
// (512 B steps up to 1 MB, then 1/8 of the next power of two) so near sizes
// share blocks. Reuse is safe without events because every kernel of a device
// runs on its one stream (tensor/cuda/runtime.h): a block freed by the host
// is only reused by work queued after the work that last touched it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ms::cuda {

struct AllocatorStats {
  size_t allocated = 0;       // bytes in live blocks (bucket-rounded)
  size_t reserved = 0;        // bytes obtained from cudaMalloc: live + cached
  size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  int64_t cuda_mallocs = 0;   // cudaMalloc calls (a cache hit makes none)
  int64_t cache_hits = 0;     // allocations served from a free list
};

size_t round_size(size_t nbytes);
// A block of at least `nbytes` on `device`; throws ms::Error when the device
// is out of memory even after returning the cache to the driver.
void* allocate(size_t nbytes, int device);
// Returns a block from allocate() (same nbytes and device) to its free list.
void deallocate(void* p, size_t nbytes, int device);
// Returns every cached (free) block to the driver (torch.cuda.empty_cache).
void empty_cache(int device);
AllocatorStats stats(int device);
void reset_peak(int device);

}  // namespace ms::cuda
