#include "tensor/cuda/runtime.h"

#include <mutex>
#include <vector>

#include "tensor/device.h"
#include "tensor/error.h"

namespace ms {

bool cuda_built() {
  return true;
}

int cuda_device_count() {
  return cuda::device_count();
}

namespace cuda {

void check(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return;
  // Clear the runtime's "last error" so a recoverable failure (out of memory,
  // a bad argument) does not resurface at the next unrelated call.
  cudaGetLastError();
  throw Error(str_cat(call, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                      ") at ", file, ":", line));
}

int device_count() {
  // Without a driver this returns cudaErrorNoDevice or
  // cudaErrorInsufficientDriver; both mean "no GPU here", not a failure.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    return n;
  }();
  return count;
}

int current_device() {
  MS_CHECK(device_count() > 0,
           "CUDA: no CUDA device is visible (cudaGetDeviceCount found none; check nvidia-smi and "
           "CUDA_VISIBLE_DEVICES), so CUDA tensors cannot be used; use the cpu device");
  int d = 0;
  MS_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) {
  MS_CHECK(device >= 0 && device < device_count(), "CUDA: device ", device,
           " does not exist (this machine has ", device_count(), " CUDA device(s): valid 0..",
           device_count() - 1, ")");
  MS_CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t stream(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t>* streams = new std::vector<cudaStream_t>();  // lives past exit
  std::lock_guard<std::mutex> lock(mu);
  MS_CHECK(device >= 0 && device < device_count(), "CUDA: stream for device ", device,
           ": no such device (", device_count(), " visible)");
  if (streams->empty()) streams->assign(device_count(), nullptr);
  cudaStream_t& s = (*streams)[device];
  if (s == nullptr) {
    int prev = 0;
    MS_CUDA_CHECK(cudaGetDevice(&prev));
    MS_CUDA_CHECK(cudaSetDevice(device));
    // A blocking stream, as llm.c's cudaStreamCreate(&main_stream): none of
    // our code uses the legacy default stream, and should a library or a test
    // enqueue something there behind our back, CUDA orders it against this
    // stream instead of letting the two race (a cudaStreamNonBlocking stream
    // would not wait for a legacy-stream cudaMemcpy that is still landing).
    cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamDefault);
    MS_CUDA_CHECK(cudaSetDevice(prev));
    MS_CUDA_CHECK(err);
  }
  return s;
}

cudaStream_t current_stream() {
  return stream(current_device());
}

void synchronize(int device) {
  MS_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
}

static void copy(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind, int device) {
  if (nbytes == 0) return;
  cudaStream_t s = stream(device);
  MS_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, s));
  MS_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_to_device(void* dst, const void* src, size_t nbytes, int device) {
  copy(dst, src, nbytes, cudaMemcpyHostToDevice, device);
}
void copy_to_host(void* dst, const void* src, size_t nbytes, int device) {
  copy(dst, src, nbytes, cudaMemcpyDeviceToHost, device);
}
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device) {
  copy(dst, src, nbytes, cudaMemcpyDeviceToDevice, device);
}

void memset_zero(void* dst, size_t nbytes, int device) {
  if (nbytes == 0) return;
  MS_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, stream(device)));
}

}  // namespace cuda
}  // namespace ms
