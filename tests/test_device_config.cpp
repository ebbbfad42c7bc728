// ds_config's device keys (cli/train_device.h, parallel/engine/config.h): the
// top-level "device" (minispeed's own) and DeepSpeed's
// zero_optimization.offload_optimizer, with the errors a wrong value gets.
#include <string>

#include "parallel/engine/config.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {
const std::string kBatch = R"("train_micro_batch_size_per_gpu": 2)";
DsConfig parse(const std::string& body) {
  return parse_ds_config("{" + kBatch + (body.empty() ? "" : ", " + body) + "}", 1);
}
}  // namespace

TEST_CASE("ds_config device and offload_optimizer", "[ds_config][device]") {
  CHECK(parse("").device.empty());
  CHECK_FALSE(parse("").zero_optimization.offload_optimizer);
  CHECK(parse(R"("device": "sim")").device == "sim");
  CHECK(parse(R"("device": "cuda")").device == "cuda");
  CHECK_THROWS_WITH(parse(R"("device": "tpu")"), Catch::Contains("device"));
  const DsConfig off = parse(
      R"("zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": true}})");
  CHECK(off.zero_optimization.offload_optimizer);
  CHECK_FALSE(parse(R"("zero_optimization": {"offload_optimizer": {"device": "none"}})")
                  .zero_optimization.offload_optimizer);
  CHECK_THROWS_WITH(parse(R"("zero_optimization": {"offload_optimizer": {"device": "nvme"}})"),
                    Catch::Contains("ZeRO-Infinity") && Catch::Contains("not implemented"));
  CHECK_THROWS_WITH(
      parse(R"("zero_optimization": {"offload_optimizer": {"device": "cpu", "pin_memry": true}})"),
      Catch::Contains("pin_memry"));
}
