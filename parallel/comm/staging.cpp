// Staging device tensors through host memory for the MPI backend (staging.h).
#include "parallel/comm/staging.h"

#include <cstring>
#include <exception>

#include "tensor/device_kernels.h"  // KernelScope

#ifdef MS_CUDA
#include "tensor/cuda/runtime.h"
#endif

namespace ms::comm_detail {

bool needs_staging(const Tensor& t, const Backend& backend) {
  return t.device() != Device::CPU && !backend.moves(t.device());
}

void copy_host_into_device(const Tensor& device_dst, const Tensor& host_src) {
  MS_ASSERT(device_dst.nbytes() == host_src.nbytes() && device_dst.is_contiguous(),
            "copy_host_into_device: ", device_dst.nbytes(), " vs ", host_src.nbytes(), " bytes");
  if (device_dst.nbytes() == 0) return;
  KernelScope scope("collective (staged copy back)", device_dst.device());
  if (device_dst.device() == Device::CUDA) {
#ifdef MS_CUDA
    cuda::copy_to_device(device_dst.device_raw_data(), host_src.host_raw_data(),
                         device_dst.nbytes(), device_dst.storage()->device_index());
    return;
#else
    MS_ASSERT(false, "a cuda tensor in a build without CUDA");
#endif
  }
  // Sim's memory is host memory: its H2D transfer is a memcpy.
  std::memcpy(device_dst.device_raw_data(), host_src.host_raw_data(), device_dst.nbytes());
}

void copy_on_device(const Tensor& dst, const Tensor& src) {
  if (src.nbytes() == 0) return;
  KernelScope scope("collective (one-rank copy)", src.device());
  if (src.device() == Device::CUDA) {
#ifdef MS_CUDA
    cuda::copy_device_to_device(dst.device_raw_data(), src.device_raw_data(), src.nbytes(),
                                src.storage()->device_index());
    return;
#else
    MS_ASSERT(false, "a cuda tensor in a build without CUDA");
#endif
  }
  std::memcpy(dst.device_raw_data(), src.device_raw_data(), src.nbytes());  // CPU and Sim
}

namespace {

class StagedWork final : public Work::Impl {
 public:
  StagedWork(Work inner, Tensor host, Tensor device_dst)
      : inner_(std::move(inner)), host_(std::move(host)), dst_(std::move(device_dst)) {}
  ~StagedWork() override {
    // Like every Work: destroyed before completion, it waits (the transport
    // may still write `host`) — and then delivers, unless unwinding an error.
    if (!done_ && std::uncaught_exceptions() == 0) wait();
  }
  bool test() override {
    if (!done_ && inner_.test()) finish();
    return done_;
  }
  void wait() override {
    if (done_) return;
    inner_.wait();
    finish();
  }

 private:
  void finish() {
    if (dst_.defined()) copy_host_into_device(dst_, host_);
    done_ = true;
  }
  Work inner_;
  Tensor host_, dst_;  // dst_ undefined: nothing comes back (send)
  bool done_ = false;
};

}  // namespace

Work copy_back_when_done(Work inner, Tensor host, Tensor device_dst) {
  return Work(
      std::make_shared<StagedWork>(std::move(inner), std::move(host), std::move(device_dst)));
}

Work keep_until_done(Work inner, Tensor host) {
  return Work(std::make_shared<StagedWork>(std::move(inner), std::move(host), Tensor()));
}

}  // namespace ms::comm_detail
