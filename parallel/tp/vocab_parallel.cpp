// Vocab-parallel embedding and the tied head's logits shard (vocab_parallel.h).
#include "parallel/tp/vocab_parallel.h"

#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/placement.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/mappings.h"

namespace ms {

VocabRange vocab_range(int64_t vocab_size, int rank, int tp) {
  MS_CHECK(tp >= 1 && vocab_size % tp == 0, "vocab-parallel embedding: vocab_size ", vocab_size,
           " is not divisible by tp ", tp, " (each tp rank owns V/tp rows of wte)");
  const int64_t n = vocab_size / tp;
  return {rank * n, (rank + 1) * n};
}

// Megatron: VocabParallelEmbedding.forward — mask, shift, look up, zero the
// masked rows, reduce.
Tensor vocab_parallel_embedding(const Tensor& weight_shard, const Tensor& ids, Communicator& tp,
                                bool sequence_parallel) {
  const char* op = "vocab_parallel_embedding";
  MS_CHECK(weight_shard.dim() == 2, op, ": weight shard must be (V/tp, C), got ",
           shape_str(weight_shard.shape()));
  MS_CHECK(ids.dtype() == DType::I32, op, ": ids must be i32, got ", dtype_name(ids.dtype()));
  const int64_t V = weight_shard.shape()[0] * tp.size();
  const VocabRange mine = vocab_range(V, tp.rank(), tp.size());
  // The ids are data: the mask is built on the host from a copy (one D2H of
  // B·T ids on a device; Megatron computes it on the GPU with comparisons).
  Tensor idc = contiguous(ids.to(Device::CPU));
  const int32_t* p = idc.host_data<int32_t>();
  std::vector<int32_t> local(idc.numel());  // id - start, 0 where another rank owns it
  std::vector<double> keep(idc.numel());    // 1 where this rank owns the id
  for (int64_t i = 0; i < idc.numel(); ++i) {
    MS_CHECK(p[i] >= 0 && p[i] < V, op, ": id ", p[i], " at position ", i, " is out of range [0, ",
             V, ")");
    const bool owned = p[i] >= mine.start && p[i] < mine.end;
    local[i] = owned ? int32_t(p[i] - mine.start) : 0;
    keep[i] = owned ? 1 : 0;
  }
  Shape keep_shape = ids.shape();
  keep_shape.push_back(1);
  // The multiply zeroes the other ranks' rows AND their gradient, so local
  // row 0 collects nothing from ids this rank does not own.
  const Device device = weight_shard.device();
  Tensor rows = embedding(weight_shard, from_vector(local, ids.shape()).to(device)) *
                from_vector(keep, keep_shape, weight_shard.dtype()).to(device);  // (B, T, C)
  // Each row is nonzero on the one rank owning its id: a partial sum over tp.
  if (tp.size() > 1 && placement_checks_enabled())
    place_over(rows, MeshAxis::TP, tp, Placement::partial(),
               "vocab_parallel_embedding rows (this rank's vocabulary range, before the sum)");
  return sequence_parallel ? reduce_scatter_to_sequence_parallel_region(rows, tp)
                           : reduce_from_tp_region(rows, tp);
}

// Megatron: GPTModel's output_layer (ColumnParallelLinear without bias) fed the
// shared embedding weight.
Tensor vocab_parallel_logits(const Tensor& h, const Tensor& weight_shard, Communicator& tp,
                             bool sequence_parallel) {
  MS_CHECK(weight_shard.dim() == 2, "vocab_parallel_logits: weight shard must be (V/tp, C), got ",
           shape_str(weight_shard.shape()));
  // Under SP ln_f's output stays sharded for backward, as in the blocks.
  return column_parallel_linear(
      h, transpose(weight_shard, 0, 1), Tensor(), tp,
      {.sequence_parallel = sequence_parallel, .regather_in_backward = sequence_parallel});
}

}  // namespace ms
