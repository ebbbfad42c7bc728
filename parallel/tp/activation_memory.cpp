// The activation count of activation_memory.h, term by term.
#include "parallel/tp/activation_memory.h"

#include "tensor/error.h"

namespace ms {

namespace {

void check_shape(const ActivationShape& s) {
  MS_CHECK(s.tp >= 1 && s.heads % s.tp == 0, "activation memory: n_head ", s.heads,
           " is not divisible by tp ", s.tp);
  MS_CHECK(s.hidden % s.tp == 0, "activation memory: n_embd ", s.hidden, " is not divisible by tp ",
           s.tp);
  MS_CHECK(!s.sequence_parallel || s.seq % s.tp == 0, "activation memory: sequence length ", s.seq,
           " is not divisible by tp ", s.tp, " (sequence parallelism splits it)");
}

}  // namespace

int64_t BlockActivations::saved_values() const {
  int64_t n = 0;
  for (const ActivationTerm& a : saved) n += a.values;
  return n;
}

int64_t BlockActivations::extra_values() const {
  int64_t n = 0;
  for (const ActivationTerm& a : extras) n += a.values;
  return n;
}

int64_t BlockActivations::saved_bytes() const {
  int64_t n = 0;
  for (const ActivationTerm& a : saved) n += a.bytes();
  return n;
}

int64_t BlockActivations::extra_bytes() const {
  int64_t n = 0;
  for (const ActivationTerm& a : extras) n += a.bytes();
  return n;
}

BlockActivations block_activations(const ActivationShape& s) {
  check_shape(s);
  const int64_t t = s.tp, sbh = s.seq * s.batch * s.hidden;
  const int64_t sp_div = s.sequence_parallel ? t : 1;  // what runs on T/t tokens
  const int64_t ln_out_div = s.sequence_parallel && s.regather_in_backward ? t : 1;
  BlockActivations r;
  r.saved = {
      {"LayerNorm inputs (x, x + attn)", 2 * sbh / sp_div},
      {ln_out_div == t || !s.sequence_parallel
           ? "LayerNorm outputs (inputs of c_attn, c_fc)"
           : "LayerNorm outputs, gathered to (B, T, C) (inputs of c_attn, c_fc)",
       2 * sbh / ln_out_div},
      {"q|k|v (c_attn's output)", 3 * sbh / t},
      {"attention log-sum-exp (B, heads, T)", s.heads * s.seq * s.batch / t},
      {"attention output (attn.c_proj's input)", sbh / t},
      {"c_fc output (GELU's input)", 4 * sbh / t},
      {"GELU output (mlp.c_proj's input)", 4 * sbh / t},
  };
  r.extras = {
      {"LayerNorm mean and 1/std", 2 * 2 * s.seq * s.batch / sp_div},
      {"the block's output (the next layer's input)", sbh / sp_div},
  };
  if (s.dropout > 0)
    r.saved.push_back({"dropout masks after both c_proj (1 byte each; /t under SP)",
                       2 * sbh / sp_div, 1});
  if (s.attn_dropout > 0)
    r.saved.push_back({"attention dropout mask (1 byte each)",
                       s.heads * s.seq * s.seq * s.batch / t, 1});
  const char* which = t == 1                   ? "no tensor parallelism: 16·sbh + a·sb"
                      : !s.sequence_parallel   ? "tp: (4 + 12/t)·sbh + a·sb/t"
                      : s.regather_in_backward ? "tp + sp (re-gather): 16·sbh/t + a·sb/t"
                                               : "tp + sp: (2 + 14/t)·sbh + a·sb/t";
  std::string masks;
  if (s.dropout > 0) masks += s.sequence_parallel ? " + 2·sbh/t" : " + 2·sbh";
  if (s.attn_dropout > 0) masks += " + a·s²b/t";
  if (!masks.empty()) masks += " mask bytes";
  r.rule = std::string(which) + " values" + masks + " (s = " + std::to_string(s.seq) +
           ", b = " + std::to_string(s.batch) + ", h = " + std::to_string(s.hidden) +
           ", a = " + std::to_string(s.heads) + ", t = " + std::to_string(t) + ")";
  return r;
}

BlockActivations checkpointed_block_activations(const ActivationShape& s) {
  check_shape(s);
  const int64_t sp_div = s.sequence_parallel ? s.tp : 1;
  const int64_t input = s.seq * s.batch * s.hidden / sp_div;
  BlockActivations r;
  r.saved = {{"the block's input (the checkpoint's one saved tensor)", input}};
  r.extras = {{"the block's output (the next layer's input)", input}};
  r.rule = std::string(s.sequence_parallel ? "checkpointed, tp + sp: the block's input only, sbh/t"
                                           : "checkpointed: the block's input only, sbh") +
           " values (s = " + std::to_string(s.seq) + ", b = " + std::to_string(s.batch) +
           ", h = " + std::to_string(s.hidden) +
           (s.sequence_parallel ? ", t = " + std::to_string(s.tp) : "") + ")";
  return r;
}

int64_t korthikanti_bytes(const ActivationShape& s) {
  check_shape(s);
  const int64_t t = s.tp, sbh = s.seq * s.batch * s.hidden;
  const int64_t as2b = s.heads * s.seq * s.seq * s.batch;  // 5as/h · sbh = 5·a·s²b
  if (t == 1) return 34 * sbh + 5 * as2b;
  if (!s.sequence_parallel) return 10 * sbh + 24 * sbh / t + 5 * as2b / t;
  return (34 * sbh + 5 * as2b) / t;
}

int64_t adapted_korthikanti_bytes(const ActivationShape& s) {
  check_shape(s);
  const int64_t t = s.tp, sbh = s.seq * s.batch * s.hidden;
  const int64_t as2b = s.heads * s.seq * s.seq * s.batch, asb = s.heads * s.seq * s.batch;
  if (t == 1) return 66 * sbh + 4 * asb + as2b;
  if (!s.sequence_parallel) return 18 * sbh + 48 * sbh / t + (4 * asb + as2b) / t;
  return (66 * sbh + 4 * asb + as2b) / t;
}

int64_t saved_bytes_16bit_with_dropout(ActivationShape s) {
  s.dropout = s.attn_dropout = 0;  // the 16-bit count adds the paper's dropout terms itself
  const int64_t t = s.tp, sbh = s.seq * s.batch * s.hidden;
  const int64_t sp_div = s.sequence_parallel ? t : 1;
  const int64_t as2b = s.heads * s.seq * s.seq * s.batch;
  const int64_t dropout = 2 * sbh / sp_div + 3 * as2b / t;
  return 2 * block_activations(s).saved_values() + dropout;
}

}  // namespace ms
