// The CUDA runtime layer: device discovery, error checking, Storage on the
// GPU through the caching allocator, host<->device copies, .to(device).
// Built only with make CUDA=1; tests that need a GPU skip visibly without one.
#include <cuda_runtime_api.h>

#include "autograd/ops.h"
#include "tensor/cpu/elementwise.h"
#include "tensor/cuda/allocator.h"
#include "tensor/cuda/elementwise.h"
#include "tensor/cuda/reductions.h"
#include "tensor/cuda/runtime.h"
#include "tests/catch_compat.h"
#include "tests/cuda/cuda_skip.h"

using namespace ms;
using Catch::Contains;

TEST_CASE("a CUDA build says so and counts devices without crashing", "[cuda]") {
  CHECK(cuda_built());
  int n = cuda_device_count();  // 0 on a machine without a driver: no throw, no abort
  CHECK(n >= 0);
  CHECK(n == cuda::device_count());
}

TEST_CASE("without a GPU, a CUDA tensor is an ms::Error that says why", "[cuda]") {
  if (cuda_device_count() > 0) {
    std::printf("skipped: this machine has a CUDA device (the test is for machines without)\n");
    return;
  }
  CHECK_THROWS_WITH(Tensor::empty({4}, DType::F32, Device::CUDA), Contains("no CUDA device"));
  CHECK_THROWS_WITH(ones({2, 3}).to(Device::CUDA), Contains("no CUDA device"));
  CHECK_THROWS_WITH(cuda::set_device(0), Contains("does not exist"));
  CHECK(cuda_memory_stats(0).allocated == 0);
}

TEST_CASE("every CUDA error becomes an ms::Error naming the call", "[cuda]") {
  CHECK_NOTHROW(cuda::check(cudaSuccess, "cudaFoo()", "x.cpp", 1));
  CHECK_THROWS_AS(cuda::check(cudaErrorInvalidValue, "cudaMemcpy(dst, src, 8)", "x.cpp", 7), Error);
  CHECK_THROWS_WITH(cuda::check(cudaErrorMemoryAllocation, "cudaMalloc(&p, 1 << 40)", "x.cpp", 7),
                    Contains("cudaMalloc(&p, 1 << 40)") && Contains("cudaErrorMemoryAllocation") &&
                        Contains("x.cpp:7"));
}

TEST_CASE("allocator buckets: near sizes share a block size, large ones waste at most 1/8",
          "[cuda][allocator]") {
  CHECK(cuda::round_size(0) == 512);
  CHECK(cuda::round_size(1) == 512);
  CHECK(cuda::round_size(513) == 1024);
  CHECK(cuda::round_size(1 << 20) == (1 << 20));
  CHECK(cuda::round_size((1 << 20) + 1) == (1 << 20) + (1 << 18));  // next 1/8 of 2 MB
  for (size_t n : {size_t(3) << 20, size_t(100) << 20, (size_t(1) << 30) + 12345}) {
    size_t r = cuda::round_size(n);
    CHECK(r >= n);
    CHECK(r - n <= n / 4);  // a step is 1/8 of the power of two above n, at most n/4
  }
}

TEST_CASE("a freed CUDA block is reused without cudaMalloc; counters follow", "[cuda][allocator]") {
  MS_SKIP_WITHOUT_CUDA();
  int dev = cuda::current_device();
  cuda::empty_cache(dev);
  cuda::AllocatorStats s0 = cuda::stats(dev);
  const size_t n = (size_t(3) << 20) + 100;  // an odd size in a large bucket
  const size_t rounded = cuda::round_size(n);
  void* p = nullptr;
  {
    Tensor t = Tensor::empty({static_cast<int64_t>(n)}, DType::F32, Device::CUDA);  // 4n bytes
    (void)t;
  }
  cuda::AllocatorStats s1 = cuda::stats(dev);
  CHECK(s1.cuda_mallocs == s0.cuda_mallocs + 1);
  CHECK(s1.allocated == s0.allocated);  // freed again
  CHECK(s1.reserved == s0.reserved + cuda::round_size(4 * n));
  CHECK(s1.peak_allocated >= s0.allocated + cuda::round_size(4 * n));

  p = cuda::allocate(n, dev);
  cuda::AllocatorStats s2 = cuda::stats(dev);
  CHECK(s2.allocated == s1.allocated + rounded);
  void* q = cuda::allocate(n - 50, dev);  // same bucket, but the cached block is in use
  cuda::AllocatorStats s3 = cuda::stats(dev);
  CHECK(q != p);
  cuda::deallocate(p, n, dev);
  void* r = cuda::allocate(n + 10, dev);  // same bucket: the block just freed
  cuda::AllocatorStats s4 = cuda::stats(dev);
  CHECK(r == p);
  CHECK(s4.cuda_mallocs == s3.cuda_mallocs);
  CHECK(s4.cache_hits == s3.cache_hits + 1);
  CHECK(s4.allocated == s3.allocated);
  cuda::deallocate(q, n - 50, dev);
  cuda::deallocate(r, n + 10, dev);
  CHECK(cuda::stats(dev).allocated == s0.allocated);

  // empty_cache gives every free block back to the driver.
  cuda::empty_cache(dev);
  cuda::AllocatorStats s5 = cuda::stats(dev);
  CHECK(s5.reserved == s5.allocated);
  CHECK(cuda_memory_stats(dev).reserved == s5.reserved);
  CHECK(cuda_memory_stats(dev).peak_allocated == s5.peak_allocated);
}

TEST_CASE("a training-like loop allocates from the driver only in its first iteration",
          "[cuda][allocator]") {
  MS_SKIP_WITHOUT_CUDA();
  int dev = cuda::current_device();
  int64_t mallocs_after_first = 0;
  for (int it = 0; it < 5; ++it) {
    std::vector<Tensor> acts;
    for (int64_t n : {1000, 4096 * 3, 777777, 12345678})
      acts.push_back(Tensor::empty({n}, DType::F32, Device::CUDA));
    acts.clear();
    if (it == 0) mallocs_after_first = cuda::stats(dev).cuda_mallocs;
  }
  CHECK(cuda::stats(dev).cuda_mallocs == mallocs_after_first);
}

TEST_CASE("out of GPU memory is an ms::Error and the allocator stays usable", "[cuda][allocator]") {
  MS_SKIP_WITHOUT_CUDA();
  int dev = cuda::current_device();
  size_t before = cuda::stats(dev).allocated;
  CHECK_THROWS_WITH(cuda::allocate(size_t(1) << 50, dev),
                    Contains("CUDA out of memory") && Contains("bytes on device"));
  CHECK(cuda::stats(dev).allocated == before);
  Tensor t = ones({8}).to(Device::CUDA);  // the next call works: the error was cleared
  CHECK(t.to_vector() == std::vector<double>(8, 1.0));
}

TEST_CASE("kernel scratch comes from the caching allocator, on the main stream only",
          "[cuda][allocator]") {
  MS_SKIP_WITHOUT_CUDA();
  const int dev = cuda::current_device();
  // A strided, converting copy stages through one scratch block.
  Tensor h = reshape(arange(24 * 7), {24, 7});
  Tensor d = h.to(Device::CUDA);
  Tensor dt = Tensor::make_view(d, {7, 24}, {1, 7}, 0);  // d transposed
  Tensor out = Tensor::empty({7, 24}, DType::BF16, Device::CUDA);
  const cuda::AllocatorStats before = cuda::stats(dev);
  cuda::copy(dt, out, cuda::current_stream());
  const cuda::AllocatorStats after = cuda::stats(dev);
  CHECK(after.cuda_mallocs + after.cache_hits == before.cuda_mallocs + before.cache_hits + 1);
  CHECK(after.allocated == before.allocated);  // back on the free list
  Tensor want = Tensor::empty({7, 24}, DType::BF16);
  cpu::copy(transpose(h, 0, 1), want);
  CHECK(out.to(Device::CPU).to_vector() == want.to_vector());
  // sum_squares' accumulator: from the cache once warm, no cudaMalloc.
  Tensor ones_d = ones({1000}).to(Device::CUDA);
  CHECK(cuda::sum_squares(ones_d.device_data<float>(), 1000, cuda::current_stream()) == 1000.0);
  const int64_t mallocs = cuda::stats(dev).cuda_mallocs;
  CHECK(cuda::sum_squares(ones_d.device_data<float>(), 1000, cuda::current_stream()) == 1000.0);
  CHECK(cuda::stats(dev).cuda_mallocs == mallocs);
  // Scratch on another stream would be reused out of order: refused.
  cudaStream_t other = nullptr;
  REQUIRE(cudaStreamCreate(&other) == cudaSuccess);
  CHECK_THROWS_WITH(cuda::Scratch(8, other), Contains("not device") && Contains("main stream"));
  REQUIRE(cudaStreamDestroy(other) == cudaSuccess);
}

TEST_CASE("host <-> device copies round-trip every dtype", "[cuda][copy]") {
  MS_SKIP_WITHOUT_CUDA();
  Generator gen(7);
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    Tensor h = randn({5, 7, 3}, gen, 0, 1, dt);
    Tensor d = h.to(Device::CUDA);
    CHECK(d.device() == Device::CUDA);
    CHECK(d.shape() == h.shape());
    CHECK(d.dtype() == dt);
    Tensor back = d.to(Device::CPU);
    CHECK(back.device() == Device::CPU);
    CHECK(back.to_vector() == h.to_vector());  // bit-exact: a copy, no conversion
  }
  Tensor idx = from_vector(std::vector<int32_t>{3, -1, 70000, 0}, {4});
  CHECK(idx.to(Device::CUDA).to_vector() == idx.to_vector());
  Tensor empty = Tensor::empty({0, 3}).to(Device::CUDA);
  CHECK(empty.to(Device::CPU).numel() == 0);
}

TEST_CASE("copies of strided views keep the logical order", "[cuda][copy]") {
  MS_SKIP_WITHOUT_CUDA();
  Tensor h = reshape(arange(24), {2, 3, 4});
  Tensor ht = transpose(h, 0, 2);  // (4, 3, 2), not contiguous
  // Host view -> device: packed on the host first.
  CHECK(ht.to(Device::CUDA).to_vector() == contiguous(ht).to_vector());
  // Device view -> host: a transposed and an offset (narrowed) view of a device tensor.
  Tensor d = h.to(Device::CUDA);
  Tensor dt = Tensor::make_view(d, {4, 3, 2}, {1, 4, 12}, 0);
  CHECK(dt.to(Device::CPU).to_vector() == contiguous(ht).to_vector());
  Tensor dn =
      Tensor::make_view(d, {2, 2}, {12, 1}, 5);  // columns 5, 6 of both rows of h seen as (2, 12)
  CHECK(dn.to(Device::CPU).to_vector() == std::vector<double>{5, 6, 17, 18});
}

TEST_CASE("each device has one main stream, the same every time, ordered against stream 0",
          "[cuda][stream]") {
  MS_SKIP_WITHOUT_CUDA();
  for (int d = 0; d < cuda::device_count(); ++d) {
    cudaStream_t s = cuda::stream(d);
    CHECK(s != nullptr);  // never the legacy stream itself
    CHECK(cuda::stream(d) == s);
    // Blocking (llm.c's cudaStreamCreate): a stray legacy-stream call is
    // ordered against it instead of racing it (docs/architecture.md, "Streams").
    unsigned flags = 1;
    REQUIRE(cudaStreamGetFlags(s, &flags) == cudaSuccess);
    CHECK(flags == cudaStreamDefault);
    CHECK_NOTHROW(cuda::synchronize(d));
  }
  CHECK(cuda::current_stream() == cuda::stream(cuda::current_device()));
  CHECK_THROWS_WITH(cuda::stream(cuda::device_count()), Contains("no such device"));
  CHECK_THROWS_WITH(cuda::set_device(-1), Contains("does not exist"));
}
