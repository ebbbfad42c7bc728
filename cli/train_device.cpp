#include "cli/train_device.h"

#include <cstdio>
#include <cstdlib>

#include "tensor/storage.h"
#ifdef MS_CUDA
#include "tensor/cuda/runtime.h"
#endif

namespace ms {

void add_device_flags(Flags& f) {
  f.add("device", "cpu",
        "where tensors live and kernels run: cpu, cuda (a make CUDA=1 build on a GPU machine; "
        "one GPU per rank by local rank) or sim (the simulated device: host memory reached only "
        "through the device path, for testing the GPU path without a GPU). ds_config: \"device\"");
  f.add_switch("offload-optimizer",
               "ZeRO-Offload: fp32 master weights and optimizer state on the CPU, gradients "
               "copied down after the reduction and parameters up after the step. ds_config: "
               "zero_optimization.offload_optimizer.device \"cpu\"");
}

Device read_device_flag(const Flags& flags) {
  const std::string name = flags.str("device");
  if (name == "cpu") return Device::CPU;
  if (name == "sim") return Device::Sim;
  MS_CHECK(name == "cuda", "--device: unknown device '", name, "' (valid: cpu, cuda, sim)");
  MS_CHECK(cuda_built(),
           "--device cuda: this build has no CUDA backend (build with make CUDA=1 on a machine "
           "with the CUDA toolkit; see README, \"GPU\"); --device sim runs the same device path "
           "on the CPU");
  MS_CHECK(cuda_device_count() > 0,
           "--device cuda: no GPU is visible to this process (cuda_device_count() = 0; check "
           "nvidia-smi and CUDA_VISIBLE_DEVICES)");
  return Device::CUDA;
}

void bind_rank_device(Device device) {
  if (device != Device::CUDA) return;
#ifdef MS_CUDA
  const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  const int local = s ? std::atoi(s) : 0;
  cuda::set_device(local % cuda::device_count());
#endif
}

void move_model_to(GPT& model, Device device) {
  model.to(device);  // Module::to: every parameter, keeping its identity
}

std::shared_ptr<GPT> host_copy(const std::shared_ptr<GPT>& model) {
  const auto params = model->named_parameters();
  if (params.empty() || params[0].second.device() == Device::CPU) return model;
  auto copy = std::make_shared<GPT>(model->config(), 0);
  if (params[0].second.dtype() != DType::F32) copy->cast_parameters(params[0].second.dtype());
  for (const auto& [name, p] : params) copy->replace_parameter(name, p.to(Device::CPU));
  copy->train(model->training());
  return copy;
}

namespace {
int current_gpu() {
#ifdef MS_CUDA
  return cuda::current_device();
#else
  return 0;
#endif
}
}  // namespace

std::string device_step_field(Device device) {
  char buf[96];
  if (device == Device::Sim) {
    std::snprintf(buf, sizeof buf, " | sim %.2f MB",
                  static_cast<double>(sim_bytes_allocated()) / 1e6);
    return buf;
  }
  if (device == Device::CUDA) {
    const CudaMemoryStats s = cuda_memory_stats(current_gpu());
    std::snprintf(buf, sizeof buf, " | cuda %.2f MB (peak %.2f)",
                  static_cast<double>(s.allocated) / 1e6,
                  static_cast<double>(s.peak_allocated) / 1e6);
    return buf;
  }
  return "";
}

std::string device_memory_line(Device device, int rank) {
  char buf[256];
  if (device == Device::Sim) {
    std::snprintf(buf, sizeof buf, "device memory (sim, rank %d): %.3f MB allocated now\n", rank,
                  static_cast<double>(sim_bytes_allocated()) / 1e6);
    return buf;
  }
  if (device == Device::CUDA) {
    const int gpu = current_gpu();
    const CudaMemoryStats s = cuda_memory_stats(gpu);
    std::snprintf(buf, sizeof buf,
                  "device memory (cuda:%d, rank %d): %.3f MB allocated, %.3f MB peak, %.3f MB "
                  "reserved (the caching allocator's counters)\n",
                  gpu, rank, static_cast<double>(s.allocated) / 1e6,
                  static_cast<double>(s.peak_allocated) / 1e6,
                  static_cast<double>(s.reserved) / 1e6);
    return buf;
  }
  return "";
}

}  // namespace ms
