// The CUDA caching allocator: cudaMalloc and cudaFree synchronize the device
// and cost ~100 us-1 ms each, and a training step frees and re-allocates the
// same activation sizes every iteration. So, as PyTorch's
// CUDACachingAllocator, freed blocks go to per-size free lists (per device)
// and are handed out again without cudaFree. Sizes are rounded into buckets
// (512 B steps up to 1 MB, then 1/8 of the next power of two) so near sizes
// share blocks.
//
// Reuse needs no event because of one premise: every kernel, copy and memset
// of a device runs on its main stream (the stream rule, docs/architecture.md
// "Streams"). The host frees a block while kernels queued on that stream may
// still be using it; the next owner's work is queued on the same stream after
// them, so it cannot start before they finish. Work on any other stream breaks
// the premise, so it must either keep its tensors alive until the main stream
// has waited on its completion event (the NCCL backend's Works do:
// parallel/comm/nccl_backend.cpp) or not use this allocator.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/cuda/stream.h"

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

// Scratch memory for one launcher call (a reduction's accumulator, a strided
// copy's staging buffer), from the caching allocator rather than a second
// pool (cudaMallocAsync with its own release policy), so the allocator's
// counters see it and no memory is held outside them. Returned to the free
// list when it goes out of scope, possibly before the kernels queued on
// `stream` have used it: safe by the premise above, so `stream` must be the
// current device's main stream (checked: an ms::Error otherwise).
class Scratch {
 public:
  Scratch(size_t nbytes, cudaStream_t stream);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
  size_t nbytes_ = 0;
  int device_ = -1;
};

}  // namespace ms::cuda
