// What one tensor-parallel block keeps alive for backward, MEASURED with the
// allocator's counter, against the count of parallel/tp/activation_memory.h
// (Korthikanti et al. 2022 adapted to f32 without dropout) — for no
// parallelism, tp, tp + sp, and tp + sp with the column layers re-gathering
// their input in backward. Exact to the byte: a change to what the graph saves
// shows up here.
#include <map>

#include "nn/gpt.h"
#include "parallel/tp/activation_memory.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/shard.h"
#include "tensor/storage.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 16, C = 32, NH = 4;

// One GPT-2 block from the tp pieces (the composition of tests/mpi/test_tp_gpt.cpp).
Tensor tp_block(const Tensor& x, std::map<std::string, Tensor>& p, Communicator& tp, bool sp,
                bool regather) {
  const ColumnParallelOptions col{.sequence_parallel = sp, .regather_in_backward = regather};
  const RowParallelOptions row{.sequence_parallel = sp};
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
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = NH, cfg.n_embd = C, cfg.block_size = T;
  GPT serial(cfg, 7);
  std::vector<int> sizes = tp_sizes(world);
  sizes.insert(sizes.begin(), 1);
  for (int t : sizes) {
    Communicator tp = tp_group(world, t);
    std::map<std::string, Tensor> p;
    for (const auto& [name, full] : serial.named_parameters())
      if (name.rfind("h.0.", 0) == 0)
        p[name.substr(4)] = leaf(shard_param(full, tp_split_of(name), tp.rank(), t, NH, name));
    for (bool sp : {false, true})
      for (bool regather : {false, true}) {
        if ((sp || regather) && t == 1) continue;
        if (regather && !sp) continue;
        ActivationShape shape{B, T, C, NH, t, sp, regather};
        const BlockActivations want = block_activations(shape);
        const int64_t tokens = sp ? T / t : T;
        Tensor x = seeded({B, tokens, C}, 100 + tp.rank());
        const size_t before = cpu_bytes_allocated();
        Tensor out = tp_block(x, p, tp, sp, regather);
        const int64_t kept = int64_t(cpu_bytes_allocated() - before);
        const int64_t input = x.numel() * 4;
        INFO("tp " << t << " sp " << sp << " regather " << regather << ": " << want.rule
                   << "\nkept " << kept << " B + input " << input << " B; counted "
                   << 4 * want.saved_values() << " B saved + " << 4 * want.extra_values()
                   << " B extras");
        CHECK(kept + input == 4 * (want.saved_values() + want.extra_values()));
        // The backward still runs (what was kept is what it needs).
        sum(out).backward();
        for (auto& [name, w] : p) w.zero_grad();
      }
  }
}
