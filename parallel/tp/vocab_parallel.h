// The vocabulary split over tp: the embedding table wte [V, C] is cut by rows,
// rank r owning ids [r·V/t, (r+1)·V/t) (Megatron-LM
// tensor_parallel/layers.py::VocabParallelEmbedding, utils.py::VocabUtility),
// and GPT-2's tied LM head reuses that same shard: h · W_rᵀ is exactly the
// logits of this rank's vocabulary range (megatron/core/models/gpt/
// gpt_model.py: the output layer is a ColumnParallelLinear given the
// embedding's weight, parallel_output=True). The logits stay split; the
// vocab-parallel cross-entropy (cross_entropy.h) consumes them, so the full
// (B, T, V) logits never exist on any rank.
//
// Our byte vocabulary V = 256 splits for t = 1, 2, 4, 8; Megatron pads V to a
// multiple of 128·t instead (vocab_size_with_padding), which would change the
// softmax unless the padded logits are masked — we require V % t == 0.
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// Rows [start, end) of the vocabulary that tp rank `rank` of `tp` owns.
// An ms::Error names V and tp when t does not divide V.
struct VocabRange {
  int64_t start = 0, end = 0;
};
VocabRange vocab_range(int64_t vocab_size, int rank, int tp);

// ids i32 (B, T) with values in [0, V), weight_shard (V/t, C) -> (B, T, C):
// each rank looks up the ids it owns, zeroes the rows of the others, and the
// all-reduce (g) sums them — exactly one rank contributes each row. With
// sequence_parallel the sum is a reduce-scatter over T instead: (B, T/t, C)
// (Megatron's reduce_scatter_embeddings). V = weight_shard rows · t.
Tensor vocab_parallel_embedding(const Tensor& weight_shard, const Tensor& ids, Communicator& tp,
                                bool sequence_parallel = false);

// The tied head's logits shard: h (B, T, C) [(B, T/t, C) under SP] · W_rᵀ
// -> (B, T, V/t). f (all-gather under SP) in front, so backward sums dL/dh
// over tp; W_r's gradient needs no communication.
Tensor vocab_parallel_logits(const Tensor& h, const Tensor& weight_shard, Communicator& tp,
                             bool sequence_parallel = false);

}  // namespace ms
