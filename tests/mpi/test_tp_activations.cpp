// What one transformer layer keeps alive for backward, MEASURED with the
// allocator's counter on the real layers — the serial Block (t = 1) and the
// TpBlock a TpGPT runs (tp, tp + sp) — against the count of
// parallel/tp/activation_memory.h (Korthikanti et al. 2022 adapted to f32),
// without and with dropout (1-byte masks, residual and attention). Exact to
// the byte: a change to what the graph saves shows up here. Under SP the
// TpBlock's column layers keep only the (B, T/t, C) shard and re-gather it in
// backward, so tp + sp with both dropouts is the paper's (34·sbh + 5·a·s²b)/t
// adapted to f32, 1-byte masks and the lse in place of P: (66·sbh + 4·a·sb +
// a·s²b)/t. The last case
// assembles the same recipe from the tp layers.
#include <map>

#include "nn/gpt.h"
#include "parallel/tp/activation_memory.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/memory_report.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/tp_gpt.h"
#include "tensor/storage.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 16, C = 32, NH = 4;

GPTConfig one_layer(double dropout, double attn_dropout = 0) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = NH, cfg.n_embd = C, cfg.block_size = T, cfg.dropout = dropout;
  cfg.attn_dropout = attn_dropout;
  return cfg;
}

// TpBlock's recipe with the column layers re-gathering their input in backward.
Tensor regather_block(const Tensor& x, std::map<std::string, Tensor>& p, Communicator& tp) {
  const ColumnParallelOptions col{.sequence_parallel = true, .regather_in_backward = true};
  const RowParallelOptions row{.sequence_parallel = true};
  Tensor a = layernorm(x, p["ln_1.weight"], p["ln_1.bias"]);
  Tensor qkv = column_parallel_linear(a, p["attn.c_attn.weight"], p["attn.c_attn.bias"], tp, col);
  Tensor y = causal_attention(qkv, NH / tp.size());
  Tensor h = x + row_parallel_linear(y, p["attn.c_proj.weight"], p["attn.c_proj.bias"], tp, row);
  Tensor b = layernorm(h, p["ln_2.weight"], p["ln_2.bias"]);
  Tensor f = column_parallel_linear(b, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"], tp, col);
  return h + row_parallel_linear(gelu(f), p["mlp.c_proj.weight"], p["mlp.c_proj.bias"], tp, row);
}

}  // namespace

TEST_CASE("tp activations: a block keeps exactly the counted values, per rank",
          "[mpi][tp][activations]") {
  Communicator world = Communicator::world();
  std::vector<int> sizes = tp_sizes(world);
  sizes.insert(sizes.begin(), 1);
  for (double dropout : {0.0, 0.1})
    for (double attn_dropout : {0.0, 0.2})
      for (int t : sizes)
        for (bool sp : {false, true}) {
          if (sp && t == 1) continue;
          Communicator tp = tp_group(world, t);
          auto serial = std::make_shared<GPT>(one_layer(dropout, attn_dropout), 7);
          std::shared_ptr<TpGPT> cut;
          if (t > 1) cut = std::make_shared<TpGPT>(serial, tp, sp);
          Layer& layer = *(t > 1 ? cut->gpt() : *serial).blocks()[0];
          ActivationShape shape{B, T, C, NH, t, sp, sp, dropout, attn_dropout};
          const BlockActivations want = block_activations(shape);
          const int64_t kept = measure_block_activation_bytes(layer, C, B, sp ? T / t : T);
          INFO("tp " << t << " sp " << sp << " dropout " << dropout << " attn_dropout "
                     << attn_dropout << ": " << want.rule << "\nkept " << kept << " B; counted "
                     << want.saved_bytes() << " B saved + " << want.extra_bytes() << " B extras");
          CHECK(kept == want.saved_bytes() + want.extra_bytes());
          // Both dropouts on: what backward keeps is the paper's count in our dtypes.
          if (dropout > 0 && attn_dropout > 0)
            CHECK(want.saved_bytes() == adapted_korthikanti_bytes(shape));
        }
}

TEST_CASE("tp activations: the dropout streams are where they were after a measurement",
          "[mpi][tp][activations]") {
  auto serial = std::make_shared<GPT>(one_layer(0.1), 7);
  auto block = std::dynamic_pointer_cast<Block>(serial->blocks()[0]);
  Generator& attn = block->attn->resid_dropout->generator();
  Generator& mlp = block->mlp->dropout->generator();
  const uint64_t attn_before = attn.seed_state(), mlp_before = mlp.seed_state();
  measure_block_activation_bytes(*block, C, B, T);
  CHECK(attn.seed_state() == attn_before);
  CHECK(mlp.seed_state() == mlp_before);
}

TEST_CASE("tp activations: re-gathering in backward keeps the counted values, per rank",
          "[mpi][tp][activations]") {
  Communicator world = Communicator::world();
  GPT serial(one_layer(0), 7);
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    std::map<std::string, Tensor> p;
    for (const auto& [name, full] : serial.named_parameters())
      if (name.rfind("h.0.", 0) == 0)
        p[name.substr(4)] = leaf(shard_param(full, tp_split_of(name), tp.rank(), t, NH, name));
    const BlockActivations want = block_activations({B, T, C, NH, t, true, true});
    Tensor x = seeded({B, T / t, C}, 100 + tp.rank());
    const size_t before = cpu_bytes_allocated();
    Tensor out = regather_block(x, p, tp);
    const int64_t kept = int64_t(cpu_bytes_allocated() - before);
    INFO("tp " << t << " sp + regather: " << want.rule);
    CHECK(kept + x.numel() * 4 == want.saved_bytes() + want.extra_bytes());
    sum(out).backward();  // what was kept is what backward needs
  }
}
