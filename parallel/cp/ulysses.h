// DeepSpeed-Ulysses (Jacobs et al. 2023, arXiv 2309.14509): sequence-sharded
// activations become head-sharded for attention by one all-to-all, and back by
// another (DeepSpeed's deepspeed/sequence/layer.py: _SeqAllToAll, an autograd
// function whose backward is the reverse all-to-all, inside
// DistributedAttention). Each rank then runs ordinary causal attention on
// n_head/C heads over the whole sequence, so the attention kernel is the
// serial one; the price is that C must divide the (tp-local) head count.
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

// qkv_local (B, T/C, 3·Cl) -> (B, T/C, Cl); see cp_causal_attention.
Tensor ulysses_attention(const Tensor& qkv_local, int64_t n_head_local, Communicator& cp,
                         double attn_p, Generator& gen);

}  // namespace ms
