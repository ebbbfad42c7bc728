// Shared by tests/cuda/test_cuda_kernels*.cpp: device buffers straight from
// cudaMalloc (no Tensor, so these tests do not depend on the allocator), a
// visible skip when there is no GPU, and comparisons against the cpu:: twin.
// Every launch and copy goes on the device's main stream, as the stream rule
// says (docs/architecture.md, "Streams"): nothing here uses the legacy stream.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/cuda/runtime.h"
#include "tests/catch_compat.h"
#include "tests/cuda/cuda_skip.h"

namespace ms::cudatest {

// The stream every launcher of these tests gets (tensor/cuda/stream.h).
inline cudaStream_t main_stream() {
  return ms::cuda::current_stream();
}
// For the host-only checks: the launcher refuses its arguments before it could
// launch anything, so no stream (and no device) is needed.
inline constexpr cudaStream_t kNeverLaunched = nullptr;

// False on any error too (no driver, no device, driver older than the runtime).
inline bool has_cuda_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// A visible skip without a GPU, a failure under MS_REQUIRE_GPU=1 (cuda_skip.h).
#define MS_REQUIRE_CUDA_OR_SKIP()                       \
  MS_SKIP_UNLESS_GPU(::ms::cudatest::has_cuda_device(), \
                     "no CUDA device (cudaGetDeviceCount failed or found none)")

#define MS_CUDA_OK(expr) REQUIRE((expr) == cudaSuccess)

template <typename T>
class DeviceBuf {
 public:
  explicit DeviceBuf(size_t n) : n_(n) {
    REQUIRE(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)) == cudaSuccess);
  }
  explicit DeviceBuf(const std::vector<T>& host) : DeviceBuf(host.size()) { upload(host); }
  // cudaFree waits for the device, so no kernel still reads the buffer.
  ~DeviceBuf() { cudaFree(p_); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  // On the main stream, finished when this returns.
  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == n_);
    ms::cuda::copy_to_device(p_, host.data(), n_ * sizeof(T), ms::cuda::current_device());
  }
  // On the main stream, after the kernels queued there; waits for the bytes.
  std::vector<T> download() const {
    std::vector<T> host(n_);
    ms::cuda::copy_to_host(host.data(), p_, n_ * sizeof(T), ms::cuda::current_device());
    return host;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

template <typename T>
std::vector<T> random_vec(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

inline std::vector<int32_t> random_ids(size_t n, int32_t V, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, V - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// |got - want| <= atol + rtol·|want| elementwise; on failure names the first
// bad index and the worst error, so a GPU session can see how far off it is.
template <typename T>
void require_close(const std::vector<T>& got, const std::vector<T>& want, double rtol, double atol,
                   const std::string& what) {
  REQUIRE(got.size() == want.size());
  size_t bad = got.size(), worst_i = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    const double err = std::fabs(g - w);
    const bool ok = err <= atol + rtol * std::fabs(w) || (std::isnan(g) && std::isnan(w));
    if (!ok && bad == got.size()) bad = i;
    if (err > worst || std::isnan(err)) {
      worst = err;
      worst_i = i;
    }
  }
  std::ostringstream msg;
  msg << what << ": n = " << got.size() << ", worst |err| = " << worst << " at " << worst_i;
  if (bad != got.size())
    msg << "; first out of tolerance at " << bad << ": got " << double(got[bad]) << ", want "
        << double(want[bad]) << " (rtol " << rtol << ", atol " << atol << ")";
  INFO(msg.str());
  CHECK(bad == got.size());
}

}  // namespace ms::cudatest
