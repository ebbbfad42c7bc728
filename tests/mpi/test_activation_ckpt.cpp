// The checkpointed layer of a tp run, MEASURED per rank (TpBlock inside a
// CheckpointedBlock, tp and tp + sp) against checkpointed_block_activations,
// and the line `minispeed train` prints under the memory table: the saving
// measured beside the formula, and its price.
#include <memory>
#include <string>

#include "nn/checkpointed_block.h"
#include "nn/gpt.h"
#include "parallel/tp/activation_memory.h"
#include "parallel/tp/memory_report.h"
#include "parallel/tp/tp_gpt.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 16, C = 32, NH = 4;

GPTConfig one_layer(double dropout) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = NH, cfg.n_embd = C, cfg.block_size = T, cfg.dropout = dropout;
  return cfg;
}

}  // namespace

TEST_CASE("activation ckpt: a checkpointed tp block keeps its input only, per rank",
          "[mpi][activation_ckpt]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world))
    for (bool sp : {false, true}) {
      Communicator tp = tp_group(world, t);
      auto serial = std::make_shared<GPT>(one_layer(0.1), 7);
      TpGPT cut(serial, tp, sp);
      checkpoint_blocks(cut.gpt());
      const ActivationShape shape{B, T, C, NH, t, sp, sp, 0.1};
      const BlockActivations want = checkpointed_block_activations(shape);
      const int64_t tokens = sp ? T / t : T;
      const LayerActivationBytes m =
          measure_layer_activations(*cut.gpt().blocks()[0], C, B, tokens);
      INFO("tp " << t << " sp " << sp << ": " << want.rule);
      CHECK(m.checkpointed_in_run);
      CHECK(m.checkpointed == want.saved_bytes() + want.extra_bytes());
      CHECK(m.checkpointed == 4 * 2 * B * tokens * C);  // input + output, (B, T or T/t, C)
      const BlockActivations full = block_activations(shape);
      CHECK(m.plain == full.saved_bytes() + full.extra_bytes());
    }
}

TEST_CASE("activation ckpt: the memory report shows the saving measured beside the formula",
          "[mpi][activation_ckpt]") {
  Communicator world = Communicator::world();
  GPT model(one_layer(0), 7);
  checkpoint_blocks(model);
  // B = 1 measured, reported × B as train does.
  const LayerActivationBytes one = measure_layer_activations(*model.blocks()[0], C, 1, T);
  const std::string report = tp_memory_report(world, model.config(), held_param_split(model), one,
                                              {B, T, C, NH, 1, false, false, 0});
  if (world.rank() == 0) {
    INFO(report);
    CHECK(report.find("--checkpoint-activations, on in this run") != std::string::npos);
    // B·T·C·4 = 4,096 bytes: the block's input; + the output = 8,192.
    CHECK(report.find("= 4,096 bytes + the block's output (the next layer's input) 4,096 = 8,192 "
                      "bytes") != std::string::npos);
    CHECK(report.find("8,192 bytes on every rank: match") != std::string::npos);
    CHECK(report.find("one more forward of every block") != std::string::npos);
  }
}
