// Vocab-parallel cross-entropy (cross_entropy.h).
#include "parallel/tp/cross_entropy.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/comm/placement.h"
#include "parallel/tp/mappings.h"
#include "parallel/tp/vocab_parallel.h"
#include "tensor/factory.h"

namespace ms {

Tensor vocab_parallel_cross_entropy(const Tensor& logits_shard, const Tensor& targets,
                                    Communicator& tp) {
  const char* op = "vocab_parallel_cross_entropy";
  MS_CHECK(logits_shard.dim() == 2 && targets.dim() == 1 &&
               targets.shape()[0] == logits_shard.shape()[0],
           op, ": logits shard must be (N, V/tp) and targets (N), got ",
           shape_str(logits_shard.shape()), " and ", shape_str(targets.shape()));
  MS_CHECK(targets.dtype() == DType::I32, op, ": targets must be i32, got ",
           dtype_name(targets.dtype()));
  const int64_t N = logits_shard.shape()[0], Vl = logits_shard.shape()[1], V = Vl * tp.size();
  MS_CHECK(N > 0, op, ": no rows to average over");
  const VocabRange mine = vocab_range(V, tp.rank(), tp.size());
  const Device device = logits_shard.device();
  // The targets are data (N ids): checked and turned into gather indices on
  // the host from a copy (one D2H of N ids on a device; Megatron builds its
  // target mask on the GPU with comparison ops, which we do not have yet).
  const Tensor tc = contiguous(targets.to(Device::CPU));
  const int32_t* tgt = tc.host_data<int32_t>();
  std::vector<int32_t> flat_index(N);  // n·V/t + (target − start), 0 where another rank owns it
  std::vector<double> owned(N);        // 1 where this rank owns the target
  for (int64_t n = 0; n < N; ++n) {
    MS_CHECK(tgt[n] >= 0 && tgt[n] < V, op, ": target ", tgt[n], " at position ", n,
             " is out of range [0, ", V, ")");
    const bool mine_n = tgt[n] >= mine.start && tgt[n] < mine.end;
    flat_index[n] = mine_n ? int32_t(n * Vl + (tgt[n] - mine.start)) : 0;
    owned[n] = mine_n ? 1 : 0;
  }
  const DType dt = logits_shard.dtype();
  const Tensor index = from_vector(flat_index, {N}).to(device);
  const Tensor keep = from_vector(owned, {N}, dt).to(device);

  // Every step an op on the logits' device, so autograd gives Megatron's
  // backward, (softmax − one-hot)/N with no communication: the two sums go
  // through reduce_from_tp_region (identity backward), and the max is a
  // constant shift (detached; the softmax does not depend on it).
  //
  // Placements over tp: the logits are sharded along the vocabulary (a
  // partial input is refused: it is the output of a row-parallel layer that
  // skipped its reduction); the max after its all-reduce is replicated and
  // broadcasts along the shard; the two per-rank sums are partial until
  // reduce_from_tp_region makes them replicated.
  const bool placing = tp.size() > 1 && placement_checks_enabled();
  if (placing) {
    refuse_placement(logits_shard, MeshAxis::TP, Placement::Kind::Partial, op,
                     "the logits must be this rank's vocabulary columns, not a partial sum");
    place_over(logits_shard, MeshAxis::TP, tp, Placement::sharded(-1, 2),
               "vocab-parallel logits (this rank's vocabulary range)");
  }
  Tensor m = contiguous(max(detach(logits_shard), 1));  // (N)
  tp.all_reduce(m, ReduceOp::Max);                      // 1
  Tensor m_col = unsqueeze(m, 1);                       // (N, 1)
  if (placing)
    place_over(m_col, MeshAxis::TP, tp, Placement::replicated(), "the row max of the logits");
  Tensor shifted = sub(logits_shard, m_col);  // (N, V/t)
  // The target's shifted logit, gathered as rows of the flat (N·V/t, 1) view.
  Tensor z_mine = mul(reshape(embedding(reshape(shifted, {N * Vl, 1}), index), {N}), keep);
  Tensor e_mine = sum(exp(shifted), {1});  // (N): Σ exp over my columns
  if (placing) {
    place_over(z_mine, MeshAxis::TP, tp, Placement::partial(),
               "the target's logit (on the rank owning it)");
    place_over(e_mine, MeshAxis::TP, tp, Placement::partial(), "Σ exp over my vocabulary range");
  }
  Tensor z = reduce_from_tp_region(z_mine, tp);  // 2: (N)
  Tensor s = reduce_from_tp_region(e_mine, tp);  // 3: (N) Σ exp
  Tensor out = mean(sub(log(s), z));             // scalar
  return out;
}

}  // namespace ms
