// Vocab-parallel cross-entropy (Shoeybi et al. 2019, §3: "we fuse the output of
// the parallel GEMM [Y1, Y2] with the cross entropy loss which reduces the
// dimension to b × s"; Megatron-LM megatron/core/tensor_parallel/
// cross_entropy.py::_VocabParallelCrossEntropy). Each rank holds the logits of
// its vocabulary range; three all-reduces of N = B·T numbers replace gathering
// N·V logits:
//   1. m   = max over my columns      → all-reduce MAX  (the global row max)
//   2. z_y = logit of the target − m, on the rank owning the target, else 0
//                                      → all-reduce SUM
//   3. s   = Σ exp(logit − m) over my columns → all-reduce SUM
//   loss_n = log s − z_y, and the result is the mean over the N rows (as
//   ms::cross_entropy; Megatron returns per-token losses).
// Backward needs no communication: dlogits = (softmax − one-hot) / N · dL,
// where the one-hot is subtracted only on the rank owning the target. The tp
// sum of dL/dh happens upstream, in the head's f (vocab_parallel.h).
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

// logits_shard (N, V/t) f32 or f64, targets i32 (N) with values in [0, V),
// V = t · V/t; this rank's columns are ids [r·V/t, (r+1)·V/t). Returns the
// mean loss over N (a scalar), identical on every rank of `tp`.
Tensor vocab_parallel_cross_entropy(const Tensor& logits_shard, const Tensor& targets,
                                    Communicator& tp);

}  // namespace ms
