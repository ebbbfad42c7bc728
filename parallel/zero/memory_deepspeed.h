// DeepSpeed's own model-state memory estimators, beside the ZeRO paper's fp32
// formula (memory.h): estimate_zero2_model_states_mem_needs in
// deepspeed/runtime/zero/stage_1_and_2.py and
// estimate_zero3_model_states_mem_needs in deepspeed/runtime/zero/stage3.py,
// which their *_all_live / *_all_cold functions print as a table of options.
// They assume mixed precision (16-bit parameters and gradients, fp32 masters
// and Adam moments: the 2 + 18 bytes per parameter), count per GPU and per CPU
// (node), and pad the CPU side by additional_buffer_factor (1.5 by default).
// ZeRO-3 adds its largest layer's parameters in fp32 (4 bytes each) on the GPU:
// the layer gathered whole for its forward and backward.
//
// Same arithmetic as the Python, operation for operation (Python's int() of a
// float truncates; true division of ints is exact in doubles below 2^53, so
// these are DeepSpeed's numbers for total·18 < 2^53, about 5·10^14 parameters).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace ms {

struct DeepSpeedEstimate {
  int stage = 3;
  int64_t cpu_bytes = 0, gpu_bytes = 0;
  bool offload_optimizer = false, offload_param = false, zero_init = false;
  // DeepSpeed's option column: "offload_optimizer=cpu " (ZeRO-2),
  // "offload_param=none, offload_optimizer=cpu , zero_init=1" (ZeRO-3).
  std::string options() const;
};

struct DeepSpeedHardware {
  int64_t gpus_per_node = 1, nodes = 1;
  double additional_buffer_factor = 1.5;
};

// estimate_zero2_model_states_mem_needs(total_params, num_gpus_per_node,
// num_nodes, cpu_offload, additional_buffer_factor).
DeepSpeedEstimate deepspeed_zero2_estimate(int64_t total_params, const DeepSpeedHardware& hw,
                                           bool cpu_offload);
// estimate_zero3_model_states_mem_needs(total_params, largest_layer_params,
// ..., cpu_offload, cpu_offload_params, zero_init, additional_buffer_factor).
DeepSpeedEstimate deepspeed_zero3_estimate(int64_t total_params, int64_t largest_layer_params,
                                           const DeepSpeedHardware& hw, bool cpu_offload,
                                           bool cpu_offload_params, bool zero_init);

// The tables the *_all_cold functions print (the same rows, options and GiB
// with two decimals), each row also in exact bytes, labelled as DeepSpeed's.
// stage: 2 or 3 for one table, -1 for both; ZeRO-3 needs largest_layer_params
// (without it the table is replaced by a line saying so).
std::string format_deepspeed_estimates(int64_t total_params,
                                       std::optional<int64_t> largest_layer_params,
                                       const DeepSpeedHardware& hw, int stage);

}  // namespace ms
