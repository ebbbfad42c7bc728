// DeepSpeed's estimators (see memory_deepspeed.h). The branches follow the
// Python functions line for line; the comments give each term's meaning as
// DeepSpeed's own comment does (stage_1_and_2.py: "2 = params_16bit, 18 =
// 2_grads_16bit + 4_grads_32bit + 4_params_32bit + 8_optimizer_states_32bit").
#include "parallel/zero/memory_deepspeed.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "parallel/zero/memory.h"
#include "tensor/error.h"

namespace ms {

namespace {

void check_hardware(const DeepSpeedHardware& hw) {
  MS_CHECK(hw.gpus_per_node >= 1, "--gpus-per-node must be >= 1, got ", hw.gpus_per_node);
  MS_CHECK(hw.nodes >= 1, "--num-nodes must be >= 1, got ", hw.nodes);
  MS_CHECK(hw.additional_buffer_factor > 0, "--additional-buffer-factor must be > 0, got ",
           hw.additional_buffer_factor);
}

// Python's int(x) of a float: truncation toward zero.
int64_t py_int(double x) {
  return static_cast<int64_t>(x);
}

// Python's max(int a, float b) times an int then a float: the int branch
// stays integer until the buffer factor.
double times_max(int64_t params, int64_t a, double b, double factor) {
  if (static_cast<double>(a) >= b) return static_cast<double>(params * a) * factor;
  return static_cast<double>(params) * b * factor;
}

}  // namespace

std::string DeepSpeedEstimate::options() const {
  // DeepSpeed's format_options: f'{OffloadDeviceEnum.cpu:4}' pads "cpu" to 4.
  auto device = [](bool cpu) { return std::string(cpu ? "cpu " : "none"); };
  if (stage == 2) return "offload_optimizer=" + device(offload_optimizer);
  return "offload_param=" + device(offload_param) +
         ", offload_optimizer=" + device(offload_optimizer) +
         ", zero_init=" + (zero_init ? "1" : "0");
}

DeepSpeedEstimate deepspeed_zero2_estimate(int64_t total_params, const DeepSpeedHardware& hw,
                                           bool cpu_offload) {
  check_hardware(hw);
  const int64_t total_gpus = hw.nodes * hw.gpus_per_node;
  DeepSpeedEstimate e;
  e.stage = 2;
  e.offload_optimizer = cpu_offload;
  double cpu = 0;
  int64_t gpu = 0;
  if (cpu_offload) {
    gpu = 2 * total_params;  // the 16-bit parameters stay on the GPU
    cpu = static_cast<double>(total_params * std::max<int64_t>(4 * total_gpus, 16)) *
          hw.additional_buffer_factor;
  } else {
    gpu = 2 * total_params +
          py_int(static_cast<double>(18 * total_params) / static_cast<double>(total_gpus));
    cpu = static_cast<double>(total_params * 4 * hw.gpus_per_node) * hw.additional_buffer_factor;
  }
  e.cpu_bytes = py_int(cpu);
  e.gpu_bytes = gpu;
  return e;
}

DeepSpeedEstimate deepspeed_zero3_estimate(int64_t total_params, int64_t largest_layer_params,
                                           const DeepSpeedHardware& hw, bool cpu_offload,
                                           bool cpu_offload_params, bool zero_init) {
  check_hardware(hw);
  const int64_t total_gpus = hw.nodes * hw.gpus_per_node;
  const double gpus_factor = 1.0 / static_cast<double>(hw.nodes);
  const int64_t largest_layer_memory = 4 * largest_layer_params;
  const double f = hw.additional_buffer_factor;
  DeepSpeedEstimate e;
  e.offload_optimizer = cpu_offload;
  e.offload_param = cpu_offload_params;
  e.zero_init = zero_init;
  double cpu = 0;
  int64_t gpu = 0;
  if (cpu_offload) {
    if (cpu_offload_params) {
      gpu = largest_layer_memory;
      cpu = zero_init ? static_cast<double>(total_params * 18) * gpus_factor * f
                      : times_max(total_params, 4 * hw.gpus_per_node, 18 * gpus_factor, f);
    } else {
      gpu = largest_layer_memory +
            py_int(static_cast<double>(2 * total_params) / static_cast<double>(total_gpus));
      cpu = zero_init ? static_cast<double>(total_params * 16) * gpus_factor * f
                      : times_max(total_params, 4 * hw.gpus_per_node, 16 * gpus_factor, f);
    }
  } else {
    gpu = largest_layer_memory +
          py_int(static_cast<double>(18 * total_params) / static_cast<double>(total_gpus));
    cpu = zero_init ? static_cast<double>(largest_layer_params * 4 * hw.gpus_per_node) * f
                    : static_cast<double>(total_params * 4 * hw.gpus_per_node) * f;
  }
  e.cpu_bytes = py_int(cpu);
  e.gpu_bytes = gpu;
  return e;
}

std::string format_deepspeed_estimates(int64_t total_params,
                                       std::optional<int64_t> largest_layer_params,
                                       const DeepSpeedHardware& hw, int stage) {
  check_hardware(hw);
  MS_CHECK(stage == -1 || stage == 2 || stage == 3,
           "DeepSpeed's estimators are for ZeRO-2 and ZeRO-3, got stage ", stage);
  auto gib = [](int64_t b) { return static_cast<double>(b) / (1 << 30); };
  char buf[256];
  std::string out = str_cat(
      "DeepSpeed's estimators (mixed precision: 16-bit params and grads, fp32 masters and Adam; "
      "CPU side x additional_buffer_factor ",
      hw.additional_buffer_factor, "):\n  HW: Setup with ", hw.nodes,
      hw.nodes > 1 ? " nodes, " : " node, ", hw.gpus_per_node,
      hw.gpus_per_node > 1 ? " GPUs" : " GPU", " per node.\n  SW: Model with ",
      static_cast<int64_t>(static_cast<double>(total_params) / 1e6), "M total params");
  if (largest_layer_params)
    out += str_cat(", ", static_cast<int64_t>(static_cast<double>(*largest_layer_params) / 1e6),
                   "M largest layer params");
  out += ".\n";
  auto rows = [&](const char* title, const std::vector<DeepSpeedEstimate>& es) {
    out += str_cat("  ", title,
                   "\n    per CPU  |  per GPU |   Options   (GB = 2^30 bytes as DeepSpeed prints; "
                   "bytes: per CPU, per GPU)\n");
    for (const DeepSpeedEstimate& e : es) {
      std::snprintf(buf, sizeof buf, "   %7.2fGB | %6.2fGB | %s   (%s, %s)\n", gib(e.cpu_bytes),
                    gib(e.gpu_bytes), e.options().c_str(),
                    format_bytes(static_cast<double>(e.cpu_bytes)).c_str(),
                    format_bytes(static_cast<double>(e.gpu_bytes)).c_str());
      out += buf;
    }
  };
  if (stage != 3)
    rows("ZeRO-2 (deepspeed/runtime/zero/stage_1_and_2.py, estimate_zero2_model_states_mem_needs):",
         {deepspeed_zero2_estimate(total_params, hw, true),
          deepspeed_zero2_estimate(total_params, hw, false)});
  if (stage == 2) return out;
  const char* z3 = "ZeRO-3 (deepspeed/runtime/zero/stage3.py, estimate_zero3_model_states_mem_needs):";
  if (!largest_layer_params) {
    out += str_cat("  ", z3,
                   " needs --largest-layer-params (the most parameters one module holds "
                   "itself; GPT-2: the wte embedding, vocab x n_embd)\n");
    return out;
  }
  std::vector<DeepSpeedEstimate> es;
  // The *_all_cold loop: offload_optimizer on/off, offload_param only with it,
  // zero_init on/off.
  for (bool opt : {true, false})
    for (bool param : {true, false}) {
      if (!opt && param) continue;
      for (bool init : {true, false})
        es.push_back(deepspeed_zero3_estimate(total_params, *largest_layer_params, hw, opt, param,
                                              init));
    }
  rows(z3, es);
  return out;
}

}  // namespace ms
