// --checkpoint-activations' library side: checkpoint_blocks wraps the first
// `count` blocks once (a second call must not add a second recompute), and
// the memory report's measurement of a layer with and without checkpointing
// matches checkpointed_block_activations / block_activations to the byte —
// down to the block's input (plus its output, the next layer's input).
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "catch_compat.h"
#include "tests/counting_layer.h"
#include "nn/checkpointed_block.h"
#include "nn/gpt.h"
#include "parallel/tp/activation_memory.h"
#include "parallel/tp/memory_report.h"
#include "parallel/zero/memory.h"  // format_bytes
#include "tests/cli_run.h"

using namespace ms;
using ms::test::CountingLayer;

namespace {

constexpr int64_t B = 2, T = 16, C = 32, NH = 4;

GPTConfig tiny(double dropout, int64_t layers) {
  GPTConfig c;
  c.n_layer = layers, c.n_head = NH, c.n_embd = C, c.block_size = T, c.dropout = dropout;
  return c;
}

}  // namespace

TEST_CASE("activation ckpt: checkpoint_blocks wraps the first count blocks, once",
          "[activation_ckpt]") {
  GPT model(tiny(0.1, 3), 5);
  int forwards = 0;
  for (size_t i = 0; i < model.blocks().size(); ++i)
    model.replace_block(i, std::make_shared<CountingLayer>(model.blocks()[i], forwards));
  CHECK(num_checkpointed_blocks(model) == 0);
  checkpoint_blocks(model, 2);  // Megatron's recompute_method='block', 2 layers
  CHECK(num_checkpointed_blocks(model) == 2);
  CHECK_FALSE(std::dynamic_pointer_cast<CheckpointedBlock>(model.blocks()[2]));
  std::vector<std::shared_ptr<Layer>> replaced =
      checkpoint_blocks(model);  // all: only block 2 is new
  CHECK(num_checkpointed_blocks(model) == 3);
  CHECK(replaced[0] == model.blocks()[0]);  // already checkpointed: left as it was
  // Not wrapped twice: each block runs once in forward and once in backward.
  Tensor idx = from_vector(std::vector<double>(B * T, 7.0), {B, T}, DType::I32);
  model.loss(idx, idx).backward();
  CHECK(forwards == 2 * 3);
  CHECK_THROWS_WITH(checkpoint_blocks(model, 4), Catch::Contains("the model has 3"));
}

TEST_CASE("activation ckpt: a layer measured with and without checkpointing, to the byte",
          "[activation_ckpt]") {
  for (double p : {0.0, 0.1}) {
    GPT model(tiny(p, 1), 5);
    const ActivationShape shape{B, T, C, NH, 1, false, false, p};
    const BlockActivations plain = block_activations(shape);
    const BlockActivations ckpt = checkpointed_block_activations(shape);
    INFO("dropout " << p << ": " << plain.rule << " | " << ckpt.rule);
    // Checkpointed: the block's input, B·T·C values, and the block's output.
    CHECK(ckpt.saved_values() == B * T * C);
    CHECK(ckpt.extra_values() == B * T * C);
    for (bool wrap : {false, true}) {
      INFO("given a CheckpointedBlock: " << wrap);
      if (wrap) checkpoint_blocks(model);
      const LayerActivationBytes m = measure_layer_activations(*model.blocks()[0], C, B, T);
      CHECK(m.checkpointed_in_run == wrap);
      CHECK(m.plain == plain.saved_bytes() + plain.extra_bytes());
      CHECK(m.checkpointed == ckpt.saved_bytes() + ckpt.extra_bytes());
    }
  }
  // Under sequence parallelism the block's input is this rank's T/t positions.
  const BlockActivations sp = checkpointed_block_activations({B, T, C, NH, 2, true, false, 0});
  CHECK(sp.saved_values() == B * T / 2 * C);
}

TEST_CASE("activation ckpt: train --checkpoint-activations prints the checkpointed layer, measured",
          "[cli][activation_ckpt]") {
  // B 2, T 8, C 16, 2 heads, 2 layers; one process, then tp 2 + sp (T/t positions per rank).
  const std::string run =
      "train --n-layer 2 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --steps 1 "
      "--eval-every 0 --sample-tokens 0 --dropout 0.1 --checkpoint-activations";
  const char* m = std::getenv("MPIRUN");
  const std::string mpirun = std::string(m ? m : "mpirun --oversubscribe") + " -np 2 ";
  for (int t : {1, 2}) {
    const bool sp = t > 1;
    const std::string args = run + (sp ? " --tp 2 --sequence-parallel" : "");
    test::CliRun r = test::run_minispeed(args, sp ? mpirun : "");
    INFO("minispeed " << args << "\n" << r.output);
    REQUIRE(r.code == 0);
    const BlockActivations c = checkpointed_block_activations({2, 8, 16, 2, t, sp, false, 0.1});
    const std::string input = format_bytes(4.0 * double(c.saved_values()));  // B·T·C·4 (/t)
    const std::string kept = format_bytes(4.0 * double(c.saved_values() + c.extra_values()));
    CHECK(r.output.find("--checkpoint-activations, on in this run") != std::string::npos);
    CHECK(r.output.find(" = " + input + " bytes + the block's output") != std::string::npos);
    CHECK(r.output.find("ms::checkpoint): " + kept + " bytes on every rank: match") !=
          std::string::npos);
    CHECK(r.output.find("MISMATCH") == std::string::npos);
  }
}
