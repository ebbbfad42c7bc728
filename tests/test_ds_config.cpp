// ds_config.json (parallel/engine/config.h): DeepSpeed's batch-size
// derivation table and error strings (deepspeed/runtime/config.py, 0.19.6),
// the stricter key checks, the precision and parallel sections, describe(),
// and every example in configs/. Optimizer and scheduler: test_ds_config_optim.cpp.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "catch_compat.h"
#include "parallel/engine/config.h"
#include "parallel/engine/json_reader.h"
#include "parallel/engine/lr_schedules.h"
#include "temp_dir.h"
#include "tensor/error.h"

using namespace ms;
using Catch::Contains;

namespace {
DsConfig parse(const std::string& text, int dp = 1) {
  return parse_ds_config(text, dp);
}
}  // namespace

TEST_CASE("batch triple: every row of DeepSpeed's derivation table", "[config]") {
  struct Row {
    const char* json;
    int ws;
    int64_t tbs, micro, gas;
    std::vector<std::string> derived;
  };
  for (const Row& r : std::vector<Row>{
           {R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4,
                "gradient_accumulation_steps": 4})",
            2,
            32,
            4,
            4,
            {}},
           {R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4})",
            2,
            32,
            4,
            4,
            {"gradient_accumulation_steps"}},
           {R"({"train_batch_size": 32, "gradient_accumulation_steps": 4})",
            2,
            32,
            4,
            4,
            {"train_micro_batch_size_per_gpu"}},
           {R"({"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 4})",
            2,
            32,
            4,
            4,
            {"train_batch_size"}},
           {R"({"train_batch_size": 32})",
            2,
            32,
            16,
            1,
            {"gradient_accumulation_steps", "train_micro_batch_size_per_gpu"}},
           {R"({"train_micro_batch_size_per_gpu": 4})",
            2,
            8,
            4,
            1,
            {"gradient_accumulation_steps", "train_batch_size"}},
           {R"({"train_batch_size": 48, "train_micro_batch_size_per_gpu": 3})",
            4,
            48,
            3,
            4,
            {"gradient_accumulation_steps"}},
       }) {
    INFO(r.json << " at dp " << r.ws);
    DsConfig c = parse(r.json, r.ws);
    CHECK(c.train_batch_size == r.tbs);
    CHECK(c.train_micro_batch_size_per_gpu == r.micro);
    CHECK(c.gradient_accumulation_steps == r.gas);
    CHECK(c.dp_world_size == r.ws);
    std::vector<std::string> derived;
    for (const auto& [k, how] : c.derived)
      if (k.rfind("train", 0) == 0 || k.rfind("gradient_acc", 0) == 0) derived.push_back(k);
    CHECK(derived == r.derived);
  }
  CHECK(parse(R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4})", 2)
            .derived.at("gradient_accumulation_steps") ==
        "train_batch_size // train_micro_batch_size_per_gpu // dp_world_size = 32 // 4 // 2");
}

TEST_CASE("batch triple: DeepSpeed's errors, with where the numbers came from", "[config]") {
  const std::string either =
      "Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided";
  CHECK_THROWS_WITH(parse("{}"), Contains(either));
  CHECK_THROWS_WITH(parse(R"({"gradient_accumulation_steps": 4})"), Contains(either));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 0})"),
                    Contains("Train batch size: 0 has to be greater than 0"));
  CHECK_THROWS_WITH(parse(R"({"train_micro_batch_size_per_gpu": -1})"),
                    Contains("Micro batch size per gpu: -1 has to be greater than 0"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "gradient_accumulation_steps": 0})"),
                    Contains("Gradient accumulation steps: 0 has to be greater than 0"));
  // Derived zero: 2 // 4 ranks.
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 2})", 4),
                    Contains("Micro batch size per gpu: 0 has to be greater than 0") &&
                        Contains("train_micro_batch_size_per_gpu derived = train_batch_size // "
                                 "dp_world_size = 2 // 4"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 4, "train_micro_batch_size_per_gpu": 8})"),
                    Contains("Gradient accumulation steps: 0 has to be greater than 0"));
  // anchors §6.1: floor division turns a non-divisible pair into the last check.
  const std::string check =
      "Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * "
      "gradient_acc_step * world_size ";
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 10, "train_micro_batch_size_per_gpu": 3})"),
                    Contains(check + "10 != 3 * 3 * 1"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
                              "gradient_accumulation_steps": 1, "tensor_parallel": {"size": 2}})",
                          1),
                    Contains(check + "8 != 2 * 1 * 1") && Contains("train_batch_size given") &&
                        Contains("world_size is the data-parallel size 1 = ranks / "
                                 "(tensor_parallel.size 2 × pipeline.stages 1)"));
  CHECK_THROWS_WITH(parse(R"({"train_micro_batch_size_per_gpu": 4611686018427387904,
                              "gradient_accumulation_steps": 4})"),
                    Contains("overflows a 64-bit integer"));
}

TEST_CASE("unknown keys anywhere are errors with a did-you-mean", "[config]") {
  // DeepSpeed#653: DeepSpeed silently ignores this one.
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "gradient_clipp1ng": 1})"),
                    Contains("unknown key \"gradient_clipp1ng\" at gradient_clipp1ng; did you mean "
                             "\"gradient_clipping\"?"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "zero_optimization": {"stgae": 2}})"),
                    Contains("unknown key \"stgae\" at zero_optimization.stgae; did you mean "
                             "\"stage\"?") &&
                        Contains("valid keys in zero_optimization: allgather_bucket_size, "
                                 "offload_optimizer, overlap_comm, reduce_bucket_size, stage"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "optimizer": {"type": "AdamW",
                              "params": {"wieght_decay": 0.1}}})"),
                    Contains("at optimizer.params.wieght_decay; did you mean \"weight_decay\"?"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "Fp16": {"enabled": true}})"),
                    Contains("did you mean \"fp16\"?"));
  // Nothing close: no suggestion, the list of valid keys instead.
  std::string msg;
  try {
    parse(R"({"train_batch_size": 8, "xyzzy": 1})");
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("unknown key \"xyzzy\" at xyzzy (valid keys: "));
  CHECK(msg.find("did you mean") == std::string::npos);
  // A real DeepSpeed key minispeed does not run says so.
  CHECK_THROWS_WITH(
      parse(R"({"train_batch_size": 8, "zero_optimization": {"offload_param":
                              {"device": "cpu"}}})"),
      Contains("zero_optimization.offload_param is a DeepSpeed key that minispeed "
               "does not implement"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "wall_clock_breakdown": false})"),
                    Contains("wall_clock_breakdown is a DeepSpeed key"));
  CHECK(engine::did_you_mean("gradient_clipp1ng", {"gradient_clipping", "steps_per_print"}) ==
        "gradient_clipping");
  CHECK(engine::did_you_mean("zzz", {"stage"}).empty());
}

TEST_CASE("duplicate keys are errors naming their path", "[config]") {
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "train_batch_size": 16})"),
                    Contains("duplicate key \"train_batch_size\" at train_batch_size"));
  CHECK_THROWS_WITH(
      parse(R"({"train_batch_size": 8, "zero_optimization": {"stage": 1, "stage": 2}})"),
      Contains("duplicate key \"stage\" at zero_optimization.stage"));
  CHECK_THROWS_WITH(engine::parse_json_strict(R"({"a": [1, {"b": 1}, {"c": 1, "c": 2}]})", "x"),
                    Contains("x: duplicate key \"c\" at a[2].c"));
  // The same key in two different objects is fine.
  DsConfig c = parse(R"({"train_batch_size": 8, "fp16": {"enabled": false},
                         "bf16": {"enabled": true}})");
  CHECK(c.bf16_enabled);
}

// A ds_config nested 100,000 deep crashed with SIGSEGV (the error message
// dumped the offending value recursively). The parser stops at 64 levels, and
// every message that quotes a value quotes at most 60 characters of it.
TEST_CASE("deep or huge values are refused with a bounded message", "[config]") {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  try {
    parse(R"({"train_batch_size": )" + deep + "}");
    FAIL("no error");
  } catch (const Error& e) {
    std::string what = e.what();
    CHECK_THAT(what, Contains("JSON nested more than 64 deep at train_batch_size[0][0]"));
    CHECK(what.size() < 300);
  }
  // Allowed depth, wrong type: the value is quoted, shortened.
  std::string deep_ok = std::string(60, '[') + std::string(60, ']');
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": )" + deep_ok + "}"),
                    Contains("train_batch_size must be an integer, got [[[["));
  std::string huge = "[";
  for (int i = 0; i < 1000000; ++i) huge += (i ? ",1" : "1");
  huge += "]";
  try {
    parse(R"({"train_batch_size": )" + huge + "}");
    FAIL("no error");
  } catch (const Error& e) {
    std::string what = e.what();
    CHECK_THAT(what, Contains("train_batch_size must be an integer, got [1, 1, 1"));
    CHECK(what.size() < 200);
  }
}

TEST_CASE("wrong types name the key, the value and the expected type", "[config]") {
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": "16"})"),
                    Contains("train_batch_size must be an integer, got \"16\" (a string)"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 16.5})"),
                    Contains("train_batch_size must be an integer, got 16.5 (a number)"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": "auto"})"), Contains("Hugging Face"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "gradient_clipping": true})"),
                    Contains("gradient_clipping must be a number, got true (a boolean)"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "fp16": {"enabled": "yes"}})"),
                    Contains("fp16.enabled must be true or false, got \"yes\" (a string)"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "zero_optimization": true})"),
                    Contains("zero_optimization must be an object ({...}), got true (a boolean)"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "optimizer": {"type": "AdamW",
                              "params": {"betas": 0.9}}})"),
                    Contains("optimizer.params.betas must be an array of two numbers in [0, 1)"));
  CHECK_THROWS_WITH(parse("[1, 2]"), Contains("the top level must be a JSON object"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8,})"), Contains("invalid JSON: parse error"));
  // Whole numbers written as floats (DeepSpeed's docs write 5e8) are integers.
  DsConfig c =
      parse(R"({"train_batch_size": 8.0, "zero_optimization": {"reduce_bucket_size": 2e8}})");
  CHECK(c.train_batch_size == 8);
  CHECK(c.zero_optimization.reduce_bucket_size == 200000000);
  // null is DeepSpeed's None: not given.
  CHECK(parse(R"({"train_batch_size": 8, "train_micro_batch_size_per_gpu": null})")
            .train_micro_batch_size_per_gpu == 8);
}

TEST_CASE("out-of-range values name the valid range", "[config]") {
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "zero_optimization": {"stage": 4}})"),
                    Contains("zero_optimization.stage must be in [0, 3], got 4"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "gradient_clipping": -1})"),
                    Contains("gradient_clipping must be a finite number >= 0, got -1"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "steps_per_print": 0})"),
                    Contains("steps_per_print must be in [1, "));
  CHECK_THROWS_WITH(
      parse(R"({"train_batch_size": 8, "pipeline": {"schedule": "1F1B"}})"),
      Contains("pipeline.schedule must be one of \"gpipe\", \"1f1b\", \"interleaved\", "
               "got \"1F1B\"; did you mean \"1f1b\"?"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "tensor_parallel": {"size": 0}})"),
                    Contains("tensor_parallel.size must be in [1, "));
}

TEST_CASE("DeepSpeed's defaults", "[config]") {
  DsConfig c = parse(R"({"train_micro_batch_size_per_gpu": 2})");
  CHECK(!c.optimizer);
  CHECK(!c.scheduler);
  CHECK(c.gradient_clipping == 1.0);
  CHECK(!c.steps_per_print);
  CHECK(!c.fp16.enabled);
  CHECK(c.fp16.loss_scale == 0);
  CHECK(c.fp16.initial_scale_power == 16);
  CHECK(c.fp16.loss_scale_window == 1000);
  CHECK(c.fp16.hysteresis == 2);
  CHECK(c.fp16.min_loss_scale == 1);
  CHECK(!c.bf16_enabled);
  CHECK(c.zero_optimization.stage == 0);
  CHECK(c.zero_optimization.reduce_bucket_size == 500000000);
  CHECK(c.zero_optimization.allgather_bucket_size == 500000000);
  CHECK(!c.zero_optimization.overlap_comm);
  CHECK(c.derived.count("zero_optimization.overlap_comm"));
  CHECK(!c.activation_checkpointing.partition_activations);
  CHECK(!c.activation_checkpointing.number_checkpoints);
  CHECK(c.tensor_parallel.size == 1);
  CHECK(!c.tensor_parallel.sequence_parallel);
  CHECK(c.pipeline.stages == 1);
  CHECK(c.pipeline.schedule == "1f1b");
  CHECK(c.pipeline.virtual_stages == 1);
  // overlap_comm: None resolves to stage == 3.
  CHECK(parse(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3}})")
            .zero_optimization.overlap_comm);
  CHECK(!parse(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
                   "overlap_comm": false}})")
             .zero_optimization.overlap_comm);
  CHECK(parse(R"({"train_batch_size": 8, "gradient_clipping": 0})").gradient_clipping == 0);
  // "bfloat16" is DeepSpeed's legacy name for bf16.
  CHECK(parse(R"({"train_batch_size": 8, "bfloat16": {"enabled": true}})").bf16_enabled);
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "bfloat16": {}, "bf16": {}})"),
                    Contains("bfloat16 and bf16 are the same section"));
}

TEST_CASE("precision and parallel sections: DeepSpeed's checks and ours", "[config]") {
  auto p = [](const std::string& extra) {
    return parse(R"({"train_batch_size": 8, )" + extra + "}");
  };
  CHECK_THROWS_WITH(p(R"("fp16": {"enabled": true}, "bf16": {"enabled": true})"),
                    Contains("bfloat16 and fp16 modes cannot be simultaneously enabled"));
  CHECK_THROWS_WITH(p(R"("fp16": {"loss_scale": -1})"),
                    Contains("fp16.loss_scale must be >= 0 (0 enables dynamic loss scaling)"));
  CHECK_THROWS_WITH(p(R"("fp16": {"loss_scale_window": 0})"),
                    Contains("fp16.loss_scale_window must be > 0 when dynamic loss scaling is "
                             "enabled (loss_scale=0)"));
  CHECK(
      p(R"("fp16": {"enabled": true, "loss_scale": 8, "loss_scale_window": 0})").fp16.loss_scale ==
      8);
  CHECK_THROWS_WITH(p(R"("fp16": {"hysteresis": 0})"), Contains("fp16.hysteresis must be in [1, "));
  CHECK_THROWS_WITH(p(R"("fp16": {"initial_scale_power": 200})"),
                    Contains("fp16.initial_scale_power must be in [0, 127], got 200"));
  CHECK_THROWS_WITH(p(R"("fp16": {"initial_scale_power": 2, "min_loss_scale": 8})"),
                    Contains("fp16.min_loss_scale 8 is above the initial scale 2^2"));
  CHECK_THROWS_WITH(
      p(R"("tensor_parallel": {"sequence_parallel": true})"),
      Contains("tensor_parallel.sequence_parallel true needs tensor_parallel.size > 1"));
  CHECK_THROWS_WITH(p(R"("pipeline": {"stages": 2, "virtual_stages": 2})"),
                    Contains("pipeline.virtual_stages 2 needs pipeline.schedule \"interleaved\""));
  CHECK_THROWS_WITH(p(R"("pipeline": {"stages": 2}, "zero_optimization": {"stage": 2})"),
                    Contains("ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism"));
  CHECK(p(R"("pipeline": {"stages": 2}, "zero_optimization": {"stage": 1})").pipeline.stages == 2);
  CHECK_THROWS_WITH(
      parse(R"({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 3,
                "pipeline": {"stages": 2, "schedule": "interleaved", "virtual_stages": 2}})"),
      Contains("pipeline.schedule \"interleaved\" needs gradient_accumulation_steps (3, the "
               "micro-batches per step) to be a multiple of pipeline.stages (2)"));
  CHECK(p(R"("activation_checkpointing": {"partition_activations": true, "number_checkpoints": 4})")
            .activation_checkpointing.number_checkpoints == 4);
}

TEST_CASE("load_ds_config: file errors and messages naming the file", "[config]") {
  test::TempDir dir("ds_config");
  CHECK_THROWS_WITH(load_ds_config(dir.file("missing.json"), 1),
                    Contains("no such file") && Contains("missing.json"));
  CHECK_THROWS_WITH(load_ds_config(dir.dir.string(), 1), Contains("is not a regular file"));
  std::string path = dir.file("typo.json");
  std::ofstream(path) << R"({"train_batch_size": 8, "gradient_clipp1ng": 1})";
  CHECK_THROWS_WITH(load_ds_config(path, 1), Contains(path + ": unknown key"));
}

TEST_CASE("describe marks given, default and derived values", "[config]") {
  DsConfig c = load_ds_config("configs/dp_zero2.json", 2);
  std::string d = describe(c);
  INFO(d);
  CHECK_THAT(d, Contains("configs/dp_zero2.json, resolved for 2 data-parallel ranks"));
  CHECK_THAT(d, Contains("(derived: train_batch_size // train_micro_batch_size_per_gpu // "
                         "dp_world_size = 32 // 8 // 2)"));
  CHECK_THAT(d, Contains("fp16.enabled"));
  CHECK_THAT(d, Contains("false   (default)"));
  CHECK(d.find("train_batch_size                                32\n") != std::string::npos);
  std::string adam = describe(parse(R"({"train_batch_size": 8, "optimizer": {"type": "Adam"}})"));
  CHECK_THAT(adam, Contains("\"Adam\" means AdamW, as DeepSpeed's adam_w_mode defaults to true"));
  CHECK_THAT(adam, Contains("steps_per_print"));
  CHECK_THAT(adam, Contains("(derived: stage == 3 (DeepSpeed's default None))"));
}

TEST_CASE("every example in configs/ parses", "[config]") {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("configs")) {
    if (entry.path().extension() != ".json") continue;
    ++n;
    for (int dp : {1, 2, 4}) {
      INFO(entry.path().string() << " at dp " << dp);
      DsConfig c = load_ds_config(entry.path().string(), dp);
      CHECK(c.train_batch_size ==
            c.train_micro_batch_size_per_gpu * c.gradient_accumulation_steps * dp);
      CHECK(!describe(c).empty());
    }
  }
  CHECK(n >= 6);
  CHECK(load_ds_config("configs/dp_zero2.json", 2).zero_optimization.stage == 2);
  DsConfig tp = load_ds_config("configs/tp_sp.json", 1);
  CHECK((tp.tensor_parallel.size == 2 && tp.tensor_parallel.sequence_parallel));
  CHECK(load_ds_config("configs/pp_1f1b.json", 1).pipeline.schedule == "1f1b");
  DsConfig three = load_ds_config("configs/3d.json", 2);
  CHECK((three.tensor_parallel.size == 2 && three.pipeline.stages == 2 &&
         three.pipeline.virtual_stages == 2));
  CHECK(load_ds_config("configs/bf16.json", 1).bf16_enabled);
  CHECK(load_ds_config("configs/fp16.json", 1).fp16.enabled);
  CHECK(load_ds_config("configs/moe.json", 1).moe.num_experts == 4);
}

TEST_CASE("for a job of N ranks the data-parallel size is N / (tp × pp)", "[config]") {
  DsConfig c = load_ds_config_for_ranks("configs/3d.json", 8);
  CHECK(c.dp_world_size == 2);
  CHECK(c.ranks == 8);
  CHECK(c.train_batch_size == 4 * 4 * 2);
  CHECK_THAT(describe(c), Contains("resolved for 2 data-parallel ranks (8 ranks / "
                                   "(tensor_parallel.size 2 × pipeline.stages 2))"));
  CHECK_THROWS_WITH(load_ds_config_for_ranks("configs/3d.json", 6),
                    Contains("configs/3d.json: the 6 ranks are not divisible by "
                             "tensor_parallel.size 2 × pipeline.stages 2 = 4"));
  CHECK_THROWS_WITH(
      parse_ds_config_for_ranks(R"({"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
                                    "gradient_accumulation_steps": 1,
                                    "tensor_parallel": {"size": 2}})",
                                4),
      Contains("8 != 2 * 1 * 2") &&
          Contains("world_size is the data-parallel size 2 = 4 ranks / (tensor_parallel.size 2 × "
                   "pipeline.stages 1)"));
  CHECK(parse_ds_config_for_ranks(R"({"train_micro_batch_size_per_gpu": 2})", 3).dp_world_size ==
        3);
  CHECK_THROWS_WITH(parse_ds_config_for_ranks("{}", 0), Contains("number of ranks must be >= 1"));
}

TEST_CASE("an integer written as a float past int64 is out of range, not wrapped", "[config]") {
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "steps_per_print": 9223372036854775808.0})"),
                    Contains("steps_per_print must be in [1, 9223372036854775807]"));
  CHECK_THROWS_WITH(parse(R"({"train_batch_size": 8, "steps_per_print": 9223372036854775808})"),
                    Contains("steps_per_print must be in [1, 9223372036854775807]"));
}

TEST_CASE("context parallelism: sequence_parallel_size and context_parallel.algo", "[config]") {
  // DeepSpeed's top-level key for the Ulysses degree; the algorithm is ours.
  DsConfig d = parse(R"({"train_micro_batch_size_per_gpu": 2})");
  CHECK(d.context_parallel.size == 1);
  CHECK(d.context_parallel.algo == "ulysses");
  DsConfig c = parse_ds_config_for_ranks(
      R"({"train_micro_batch_size_per_gpu": 2, "sequence_parallel_size": 2,
          "context_parallel": {"algo": "zigzag"}, "tensor_parallel": {"size": 2}})",
      8);
  CHECK(c.context_parallel.size == 2);
  CHECK(c.context_parallel.algo == "zigzag");
  CHECK(c.dp_world_size == 2);  // 8 ranks / (tp 2 × pp 1 × cp 2)
  CHECK(c.train_batch_size == 4);  // the cp ranks of a replica share its batch
  CHECK(describe(c).find("sequence_parallel_size") != std::string::npos);
  CHECK_THROWS_WITH(parse_ds_config_for_ranks(
                        R"({"train_micro_batch_size_per_gpu": 2, "sequence_parallel_size": 3})", 4),
                    Contains("the 4 ranks are not divisible by tensor_parallel.size 1 × "
                             "pipeline.stages 1 × sequence_parallel_size 3 = 3"));
  CHECK_THROWS_WITH(parse(R"({"train_micro_batch_size_per_gpu": 2,
                              "context_parallel": {"algo": "p2p"}})"),
                    Contains("context_parallel.algo"));
  CHECK_THROWS_WITH(parse(R"({"train_micro_batch_size_per_gpu": 2, "sequence_parallel_size": 0})"),
                    Contains("sequence_parallel_size must be in [1, "));
}

