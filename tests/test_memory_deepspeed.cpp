// DeepSpeed's own memory estimators (parallel/zero/memory_deepspeed.h) on
// GPT-2 124M, 1 node of 8 GPUs, against numbers worked out by hand from the
// Python (deepspeed/runtime/zero/stage_1_and_2.py and stage3.py).
#include "catch_compat.h"
#include "parallel/zero/memory_deepspeed.h"
#include "tests/cli_run.h"

using namespace ms;

namespace {

// GPT-2 small: 124,439,808 parameters (tied head counted once, as
// model_to_params does by data_ptr); its largest module is wte, 50257 × 768.
constexpr int64_t P = 124439808, L = 38597376;

}  // namespace

TEST_CASE("DeepSpeed's ZeRO-2 estimator, GPT-2 124M on 1 node × 8 GPUs", "[memory][deepspeed]") {
  const DeepSpeedHardware hw{8, 1, 1.5};
  // cpu_offload: gpu = 2·P = 248,879,616;
  //              cpu = P · max(4·8, 16) · 1.5 = P · 48 = 5,973,110,784.
  DeepSpeedEstimate off = deepspeed_zero2_estimate(P, hw, true);
  CHECK(off.gpu_bytes == 248879616);
  CHECK(off.cpu_bytes == 5973110784);
  CHECK(off.options() == "offload_optimizer=cpu ");
  // no offload: gpu = 2·P + int(18·P / 8) = 248,879,616 + 279,989,568 = 528,869,184;
  //             cpu = P · 4 · 8 · 1.5 = 5,973,110,784.
  DeepSpeedEstimate on = deepspeed_zero2_estimate(P, hw, false);
  CHECK(on.gpu_bytes == 528869184);
  CHECK(on.cpu_bytes == 5973110784);
  CHECK(on.options() == "offload_optimizer=none");
}

TEST_CASE("DeepSpeed's ZeRO-3 estimator, GPT-2 124M on 1 node × 8 GPUs", "[memory][deepspeed]") {
  const DeepSpeedHardware hw{8, 1, 1.5};
  // largest_layer_memory = 4·L = 154,389,504; gpus_factor = 1/1.
  struct Row {
    bool opt, param, init;
    int64_t cpu, gpu;
  };
  const Row rows[] = {
      // offload optimizer and params: gpu = 4L;
      //   zero_init: cpu = P·18·1·1.5 = 3,359,874,816
      //   else:      cpu = P·max(4·8, 18)·1.5 = P·48 = 5,973,110,784
      {true, true, true, 3359874816, 154389504},
      {true, true, false, 5973110784, 154389504},
      // offload optimizer only: gpu = 4L + int(2P/8) = 154,389,504 + 31,109,952 = 185,499,456;
      //   zero_init: cpu = P·16·1.5 = 2,986,555,392; else P·max(32, 16)·1.5
      {true, false, true, 2986555392, 185499456},
      {true, false, false, 5973110784, 185499456},
      // no offload: gpu = 4L + int(18P/8) = 154,389,504 + 279,989,568 = 434,379,072;
      //   zero_init: cpu = L·4·8·1.5 = 1,852,674,048; else P·4·8·1.5
      {false, false, true, 1852674048, 434379072},
      {false, false, false, 5973110784, 434379072},
  };
  for (const Row& r : rows) {
    DeepSpeedEstimate e = deepspeed_zero3_estimate(P, L, hw, r.opt, r.param, r.init);
    INFO(e.options());
    CHECK(e.cpu_bytes == r.cpu);
    CHECK(e.gpu_bytes == r.gpu);
  }
  CHECK(deepspeed_zero3_estimate(P, L, hw, true, false, true).options() ==
        "offload_param=none, offload_optimizer=cpu , zero_init=1");
  // 2 nodes: gpus_factor 1/2 halves the zero_init CPU side; max(4·8, 18/2) keeps 32.
  const DeepSpeedHardware two{8, 2, 1.5};
  CHECK(deepspeed_zero3_estimate(P, L, two, true, true, true).cpu_bytes == 1679937408);
  CHECK(deepspeed_zero3_estimate(P, L, two, true, true, false).cpu_bytes == 5973110784);
  // 16 GPUs: gpu = 4L + int(18P/16) = 154,389,504 + 139,994,784.
  CHECK(deepspeed_zero3_estimate(P, L, two, false, false, true).gpu_bytes == 294384288);
}

TEST_CASE("estimate-memory prints DeepSpeed's tables, labelled, beside the paper's",
          "[memory][deepspeed][cli]") {
  ms::test::CliRun r = ms::test::run_minispeed(
      "estimate-memory --params 124439808 --largest-layer-params 38597376 --gpus-per-node 8 "
      "--dp 8");
  INFO(r.output);
  REQUIRE(r.code == 0);
  for (const char* want :
       {"DeepSpeed's estimators", "HW: Setup with 1 node, 8 GPUs per node.",
        "SW: Model with 124M total params, 38M largest layer params.",
        "estimate_zero2_model_states_mem_needs", "estimate_zero3_model_states_mem_needs",
        "      5.56GB |   0.49GB | offload_optimizer=none   (5,973,110,784, 528,869,184)",
        "      1.73GB |   0.40GB | offload_param=none, offload_optimizer=none, zero_init=1"})
    CHECK(r.output.find(want) != std::string::npos);
  ms::test::CliRun no_layer = ms::test::run_minispeed("estimate-memory --params 1000 --dp 2");
  CHECK(no_layer.output.find("needs --largest-layer-params") != std::string::npos);
  ms::test::check_one_line_error("estimate-memory --params 1000 --largest-layer-params 2000",
                                 "--largest-layer-params must be in [1, --params = 1000], got 2000");
  ms::test::check_one_line_error("estimate-memory --params 1000 --num-nodes 0",
                                 "--num-nodes must be in [1, 1048576], got 0");
}
