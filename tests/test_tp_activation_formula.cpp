// The activation count of parallel/tp/activation_memory.h against Korthikanti
// et al. 2022's per-layer formulas: our values at 2 bytes plus the dropout
// bytes the paper includes must equal its equations 1, 2 and 4 exactly, once
// its 16-bit attention probabilities P (2·a·s²b/t bytes) are swapped for our
// 16-bit log-sum-exp (2·a·sb/t; tensor/cpu/flash_attention.h).
#include "parallel/tp/activation_memory.h"
#include "tensor/error.h"
#include "tests/catch_compat.h"

using namespace ms;

TEST_CASE("tp activations: our count + dropout bytes = Korthikanti's formulas",
          "[tp][activations]") {
  // GPT-2 small and the paper's 22B-like shape (h = 6144, a = 64, s = 2048).
  for (ActivationShape s : {ActivationShape{8, 1024, 768, 12}, ActivationShape{1, 2048, 6144, 64}})
    for (int t : {1, 2, 4, 8})
      for (bool sp : {false, true}) {
        if (s.heads % t != 0) continue;  // GPT-2 small's 12 heads do not split 8 ways
        s.tp = t;
        s.sequence_parallel = sp && t > 1;
        s.regather_in_backward = s.sequence_parallel;
        INFO("t " << t << " sp " << s.sequence_parallel);
        const int64_t p_bytes = 2 * s.heads * s.seq * s.seq * s.batch / t;
        const int64_t lse_bytes = 2 * s.heads * s.seq * s.batch / t;
        CHECK(saved_bytes_16bit_with_dropout(s) == korthikanti_bytes(s) - p_bytes + lse_bytes);
      }
}

TEST_CASE(
    "tp activations: with dropout, 1-byte masks; tp + sp is (66·sbh + 4·a·sb + a·s²b)/t bytes",
    "[tp][activations]") {
  const int64_t b = 2, s = 16, h = 32, a = 4, sbh = s * b * h, as2b = a * s * s * b,
                asb = a * s * b;
  ActivationShape shape{b, s, h, a, 1, false, false, 0.1, 0.1};
  CHECK(block_activations(shape).saved_bytes() == 66 * sbh + 4 * asb + as2b);
  shape.tp = 4;
  CHECK(block_activations(shape).saved_bytes() ==
        18 * sbh + 48 * sbh / 4 + (4 * asb + as2b) / 4);
  shape.sequence_parallel = shape.regather_in_backward = true;
  CHECK(block_activations(shape).saved_bytes() == (66 * sbh + 4 * asb + as2b) / 4);
  CHECK(adapted_korthikanti_bytes(shape) == (66 * sbh + 4 * asb + as2b) / 4);
  // Each mask is one byte per element: the residual pair 2·sbh/t, attention a·s²b/t.
  ActivationShape no_dropout = shape;
  no_dropout.dropout = no_dropout.attn_dropout = 0;
  CHECK(block_activations(shape).saved_bytes() - block_activations(no_dropout).saved_bytes() ==
        2 * sbh / 4 + as2b / 4);
}

TEST_CASE("tp activations: the four cases in closed form", "[tp][activations]") {
  // The attention term is the lse, a·sb/t: nothing grows with s².
  const int64_t b = 2, s = 16, h = 32, a = 4, sbh = s * b * h, asb = a * s * b;
  ActivationShape none{b, s, h, a};
  CHECK(block_activations(none).saved_values() == 16 * sbh + asb);
  ActivationShape tp = none;
  tp.tp = 4;
  CHECK(block_activations(tp).saved_values() == 4 * sbh + 12 * sbh / 4 + asb / 4);
  ActivationShape sp = tp;
  sp.sequence_parallel = true;
  // Without the re-gather the column layers keep their gathered (B, T, C)
  // inputs: 2·sbh more than the paper's all-divided-by-t count, minus the
  // 2·sbh/t the shards would have been.
  CHECK(block_activations(sp).saved_values() == 2 * sbh + 14 * sbh / 4 + asb / 4);
  ActivationShape regather = sp;
  regather.regather_in_backward = true;
  CHECK(block_activations(regather).saved_values() == (16 * sbh + asb) / 4);
  CHECK(block_activations(regather).extra_values() == (4 * s * b + sbh) / 4);
  CHECK(block_activations(tp).extra_values() == 4 * s * b + sbh);
}

TEST_CASE("tp activations: shapes that do not split are errors naming both numbers",
          "[tp][activations]") {
  ActivationShape s{2, 16, 32, 6};
  s.tp = 4;
  CHECK_THROWS_WITH(block_activations(s), Catch::Contains("n_head 6") && Catch::Contains("tp 4"));
  ActivationShape q{2, 6, 32, 4};
  q.tp = 4;
  q.sequence_parallel = true;
  CHECK_THROWS_WITH(korthikanti_bytes(q), Catch::Contains("sequence length 6"));
}
