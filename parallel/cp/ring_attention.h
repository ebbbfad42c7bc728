// Ring attention (Liu, Zaharia & Abbeel 2023, arXiv 2310.01889) and its
// zig-zag layout (ring-flash-attention's zigzag_ring_flash_attn.py; Megatron's
// context parallelism with the load-balanced 2C-chunk layout).
//
// Forward, rank r of C: its queries stay; the packed K|V block of its own
// positions is the first block in hand. Step s = 0..C-1: start sending the
// block in hand to rank r+1 and receiving the next one from rank r-1 (none at
// the last step), compute attention of our queries against the block in hand
// — skipping key chunks that lie wholly after every query of a chunk, masking
// the diagonal chunk — and merge the partial (out, lse) into the running one
// (online_softmax.h). The transfer overlaps the compute.
// Backward (flash-attention-2 style, from the saved output and lse): the K|V
// blocks travel the ring again and with each block its dK|dV accumulator;
// after C hops the accumulator is home with every rank's contribution.
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

// qkv_local (B, T/C, 3·Cl) -> (B, T/C, Cl); `zigzag` picks the layout of
// cp_positions (cp_attention.h).
Tensor ring_attention(const Tensor& qkv_local, int64_t n_head_local, bool zigzag, Communicator& cp,
                      double attn_p, Generator& gen);

}  // namespace ms
