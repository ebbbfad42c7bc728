// Cutting a serial GPT-2 parameter into its tensor-parallel shard, and putting
// the shards back together: the start of a --tp run (a fresh or --init-from
// serial model is split) and --save-weights (the shards are gathered), so a tp
// model is numerically the serial one and its weights round-trip exactly.
//
// Megatron's _initialize_affine_weight_cpu does the same: every rank builds the
// full master weight from one seed and keeps its chunk. Rules for our Conv1D
// ([in, out]) parameters, by Hugging Face name (docs/architecture.md keeps the
// names; see linear.h for why column/row flip against Megatron's dims):
//
//   parameter            shape      split                    TpSplit
//   wte.weight           [V, C]     rows (vocab range)       Rows
//   h.N.attn.c_attn.w/b  [C, 3C]/3C per q|k|v block (below)  Qkv
//   h.N.attn.c_proj.w    [C, C]     rows (row-parallel)      Rows
//   h.N.mlp.c_fc.w/b     [C, 4C]/4C columns / same indices   Columns
//   h.N.mlp.c_proj.w     [4C, C]    rows (row-parallel)      Rows
//   c_proj biases, wpe, ln_*        replicated               Replicated
//
// The fused c_attn. Its 3C output columns are q | k | v side by side
// (GPT2Attention: `query, key, value = c_attn(x).split(C, dim=2)`). Rank r of
// t must own the SAME heads in q, k and v: columns
//     [i·C + r·C/t, i·C + (r+1)·C/t)   for i = 0 (q), 1 (k), 2 (v),
// concatenated into a [C, 3C/t] shard whose output splits again into q, k, v
// of n_head/t heads each (old Megatron's ColumnParallelLinear(stride=3); HF's
// prune_heads uses the same index pattern). A plain chunk of the 3C columns
// would give rank 0 of 2 all of q and half of k. Needs n_head % t == 0.
#pragma once
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

enum class TpSplit {
  Replicated,  // every rank holds the whole tensor
  Rows,        // dim 0 split in t contiguous chunks
  Columns,     // last dim split in t contiguous chunks (a 1-D bias: its only dim)
  Qkv,         // last dim = 3C, q|k|v blocks each split in t (above)
};
const char* tp_split_name(TpSplit s);

// The rule for a GPT-2 parameter name (table above).
TpSplit tp_split_of(const std::string& name);

// The shard of `full` that tp rank `rank` of `tp` owns, as a fresh contiguous
// tensor (no graph). Errors name `name`, the shape and tp when the split dim
// does not divide; for Qkv, also when n_head % tp != 0.
Tensor shard_param(const Tensor& full, TpSplit split, int rank, int tp, int64_t n_head,
                   const std::string& name);

// The serial tensor from all t shards, in tp rank order: shard_param's inverse.
Tensor unshard_param(const std::vector<Tensor>& shards, TpSplit split);

// Collective over `tp`: every rank gets the serial tensor from the ranks' shards.
Tensor gather_param(const Tensor& shard, TpSplit split, Communicator& tp);

// Records on a parameter (cut by shard_param) how it lives over tp, labelled
// with its name (tensor/placement.h): Rows sharded(0), Columns and Qkv
// sharded along the last dim (a 1-D bias: dim 0), Replicated replicated. Over
// a 1-rank tp group nothing is set.
void place_tp_param(const Tensor& param, TpSplit split, const Communicator& tp,
                    const std::string& name);

}  // namespace ms
