// The all-gather reference for context-parallel attention (cp_gather_attention.h).
#include "parallel/cp/cp_gather_attention.h"

#include "autograd/ops.h"
#include "parallel/comm/placement.h"
#include "parallel/tp/mappings.h"

namespace ms {

Tensor cp_gather_attention(const Tensor& qkv_local, int64_t heads, Communicator& cp, double attn_p,
                           Generator& gen) {
  MS_CHECK(qkv_local.dim() == 3, "cp_gather_attention: qkv must be (B, T/C, 3·C), got ",
           shape_str(qkv_local.shape()));
  const int64_t n = qkv_local.shape()[1];
  // All-gather forward, reduce-scatter backward (Megatron's
  // gather_from_sequence_parallel_region, here over the cp group).
  Tensor qkv = gather_from_sequence_parallel_region(qkv_local, cp);  // (B, T, 3·Cl)
  // The mapping places its output over tp, the group it is written for; here
  // the group is cp: the tp placement is the input's, and over cp the whole
  // sequence is now on every rank.
  copy_placements(qkv, qkv_local);
  place_over(qkv, MeshAxis::CP, cp, Placement::replicated(), "qkv gathered over cp");
  Tensor y = causal_attention(qkv, heads, attn_p, gen);  // (B, T, Cl)
  // My rows; narrow's backward pads with zeros, so each rank's gradient is
  // its own rows' share and the reduce-scatter sums the shares.
  return contiguous(narrow(y, 1, cp.rank() * n, n));  // (B, T/C, Cl)
}

int64_t cp_gather_attention_bytes(int64_t B, int64_t T, int64_t local_width, int C) {
  const int64_t buffer = B * T * 3 * local_width * 4;
  return 2 * buffer / C * (C - 1);
}

}  // namespace ms
