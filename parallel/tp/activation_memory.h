// What one transformer layer keeps alive for backward, per rank, with and
// without tensor and sequence parallelism: Korthikanti et al. 2022, "Reducing
// Activation Recomputation in Large Transformer Models", section 4, adapted to
// this code base — values (f32: 4 bytes each) and 1-byte dropout masks; the
// paper's 16-bit formulas (korthikanti_bytes) and ours (adapted_korthikanti_bytes)
// are set side by side below.
//
// s = T, b = B, h = C, a = n_head, t = tp size. What a GPT-2 block saves:
//   LayerNorm inputs     x and x + attn(.)                 2·sbh   (/t under SP)
//   LayerNorm outputs    inputs of c_attn and c_fc         2·sbh   (/t under SP when
//                        the column layer re-gathers its input in backward, as
//                        TpGPT's does; with ColumnParallelOptions::regather_in_backward
//                        off it keeps the gathered (B, T, C) input: full)
//   q|k|v                c_attn's output, attention input  3·sbh/t
//   attention lse        softmax's log-sum-exp per row     a·sb/t
//                        (tensor/cpu/flash_attention.h keeps it instead of
//                        the a·s²b/t probabilities P the paper counts)
//   attention output     input of attn.c_proj              sbh/t
//   c_fc output          GELU's input                      4·sbh/t
//   GELU output          input of mlp.c_proj               4·sbh/t
// Summed: none 16·sbh + a·sb; tp (4 + 12/t)·sbh + a·sb/t; tp+sp with
// re-gather 16·sbh/t + a·sb/t (the paper's "everything divided by t");
// tp+sp without it (2 + 14/t)·sbh + a·sb/t.
// Two more things are alive after a block's forward, named separately because
// the paper does not count them: the LayerNorms' per-row mean and 1/std
// (2 × 2·sb, /t under SP) and the block's output (sbh, /t under SP), which is
// the next layer's input and counted there. With dropout the masks are
// saved too, one byte per element (ops.h DropoutMask; backward needs only the
// mask): p > 0 adds the two masks after the c_proj (sbh bytes each, /t under
// SP, where a rank keeps its T/t slice) and attn_dropout > 0 the attention
// mask (a·s²b/t bytes); P and its dropped copy are recomputed block by block
// in backward from q, k, the lse and the mask, not stored.
//
// In bytes, f32 activations and 1-byte masks, with both dropouts on and the
// column layers re-gathering under SP (adapted_korthikanti_bytes):
//   none     66·sbh + 4·a·sb + a·s²b  (the paper's 16-bit: 34·sbh + 5·a·s²b)
//   tp       (18 + 48/t)·sbh + (4·a·sb + a·s²b)/t             (10 + 24/t)·sbh + …
//   tp + sp  (66·sbh + 4·a·sb + a·s²b)/t                      (34·sbh + 5·a·s²b)/t
// 4·a·sb is the f32 lse and a·s²b the mask; the paper's 5·a·s²b is 2 (16-bit
// P) + 1 (mask) + 2 (the dropped P). Without attention dropout nothing of
// ours grows with s² — what the paper's section 5 gets by recomputing
// attention ("selective recomputation"), a blocked kernel gets by design.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ms {

struct ActivationShape {
  int64_t batch = 1, seq = 1, hidden = 1, heads = 1;
  int tp = 1;
  bool sequence_parallel = false;
  bool regather_in_backward = false;  // column layers keep the (B, T/t, C) shard, not the gather
  double dropout = 0;                 // the blocks' residual dropout probability (masks saved)
  double attn_dropout = 0;            // dropout on the attention probabilities (mask saved)
};

struct ActivationTerm {
  std::string name;  // "q|k|v (c_attn's output)"
  int64_t values = 0;
  int64_t bytes_per_value = 4;  // f32 activations; 1 for dropout masks
  int64_t bytes() const { return values * bytes_per_value; }
};

struct BlockActivations {
  std::vector<ActivationTerm> saved;   // what backward needs: the paper's count
  std::vector<ActivationTerm> extras;  // LayerNorm statistics, the block's output
  int64_t saved_values() const;        // element counts (masks included, at 1 value each)
  int64_t extra_values() const;
  int64_t saved_bytes() const;  // f32 values × 4 + mask bytes
  int64_t extra_bytes() const;
  // The formula in words with the numbers put in, one line.
  std::string rule;
};

// Per rank, for one block. Throws ms::Error when t does not divide the heads,
// or (under SP) the sequence.
BlockActivations block_activations(const ActivationShape& s);

// The same layer under full activation checkpointing (Chen et al. 2016;
// Korthikanti et al. 2022 section 5 calls it "full recomputation",
// nn/checkpointed_block.h): backward keeps only the block's input, sbh values
// (/t under SP, where the block's input is this rank's T/t positions), and
// runs the block's forward once more to rebuild the rest. Extras as above:
// the block's output, which is the next layer's input (a checkpointed layer
// saves no LayerNorm statistics or dropout masks: its forward ran without a
// graph).
BlockActivations checkpointed_block_activations(const ActivationShape& s);

// The paper's per-layer bytes for 16-bit activations with dropout, per rank:
//   no parallelism   sbh·(34 + 5as/h)
//   tensor parallel  sbh·(10 + 24/t + 5as/(h·t))
//   tp + sp          sbh/t·(34 + 5as/h)
// (Korthikanti et al. 2022, equations 1, 2 and 4.) Exact integer arithmetic
// on bytes ×t, returned divided: callers pass t dividing everything.
int64_t korthikanti_bytes(const ActivationShape& s);

// The paper's count adapted to this code base (see the table at the top):
// f32 activations, 1-byte masks, the lse instead of P; dropout and attn_dropout on
// (their probabilities in `s` are ignored), the column layers re-gathering
// under SP. Equal to block_activations(s with both dropouts on).saved_bytes()
// whenever s.regather_in_backward (or t = 1, or no SP); the tests check it,
// and tests/mpi/test_tp_activations.cpp measures it.
int64_t adapted_korthikanti_bytes(const ActivationShape& s);

// Our count in the paper's terms: saved_values × 2 bytes (16-bit) plus the
// dropout bytes the paper includes — two 1-byte masks after the projections
// (sbh each, /t under SP) and, in attention, a 1-byte mask and the dropped
// 16-bit copy of P (3·a·s²b/t). Equal to korthikanti_bytes less its 16-bit P
// (2·a·s²b/t) plus our 16-bit lse (2·a·sb/t) whenever the column layers
// re-gather (or t = 1); the tests check it.
int64_t saved_bytes_16bit_with_dropout(ActivationShape s);

}  // namespace ms
