// The simplest correct context-parallel attention, the reference the others
// are checked against: every cp rank all-gathers the q|k|v of the whole
// sequence and runs full causal attention, keeping its own rows (Megatron's
// cp_comm_type "all_gather", which gathers K and V only and does not overlap
// the transfer with compute; we gather q too and compute every row, C× the
// attention work, so the result is the serial one to the bit).
#pragma once
#include <cstdint>

#include "parallel/comm/communicator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

// qkv_local (B, T/C, 3·Cl): cp rank r's positions [r·T/C, (r+1)·T/C) of `heads`
// heads -> (B, T/C, Cl), differentiable. Forward all-gathers (B, T, 3·Cl) over
// `cp`; backward reduce-scatters its gradient (each rank's rows contributed to
// every earlier position's k and v). attn_p > 0 draws the whole (B, heads, T, T)
// mask from `gen` on every rank alike: the serial masks.
Tensor cp_gather_attention(const Tensor& qkv_local, int64_t heads, Communicator& cp, double attn_p,
                           Generator& gen);

// Bytes one rank sends per layer: the all-gather forward and the reduce-scatter
// backward each move (C−1)/C of the f32 (B, T, 3·Cl) buffer (ring collectives).
int64_t cp_gather_attention_bytes(int64_t B, int64_t T, int64_t local_width, int C);

}  // namespace ms
