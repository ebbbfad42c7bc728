// Context parallelism (cp): the sequence of every sample is cut over the C
// ranks of the cp group; everything but attention works on a rank's own
// positions, and attention is the one place where positions meet. Three ways
// to let them meet (docs/architecture.md, "Context parallelism"):
//
//   Ulysses (DeepSpeed-Ulysses, Jacobs et al. 2023; deepspeed/sequence/layer.py,
//     DistributedAttention): an all-to-all turns [T/C positions, all heads]
//     into [all T positions, heads/C], each rank runs ordinary causal attention
//     on its heads, a second all-to-all turns the result back (ulysses.h).
//   Ring (Liu et al. 2023, "Ring Attention"; Megatron's cp_comm_type "p2p"):
//     queries stay, K/V blocks travel around the cp ring in C steps and the
//     partial results merge with the online-softmax rule (ring_attention.h).
//   Zigzag (ring-flash-attention's zigzag_ring_flash_attn; Megatron's
//     load-balanced cp layout): the ring with the sequence cut in 2C chunks,
//     rank r holding chunks r and 2C-1-r, so every rank does the same causal
//     work.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

enum class CpAlgo { Ulysses, Ring, Zigzag };
const char* cp_algo_name(CpAlgo algo);          // "ulysses", "ring", "zigzag"
CpAlgo parse_cp_algo(const std::string& name);  // ms::Error naming the valid choices

// The global positions of a length-T sequence that cp rank r holds, in the order its local rows are
// stored: Ulysses and Ring: [r·T/C, (r+1)·T/C); Zigzag: the 2C equal chunks r and 2C−1−r, chunk r first.
// ms::Error when T does not divide (C, or 2C for zigzag), naming T, C and the algorithm.
std::vector<int64_t> cp_positions(CpAlgo algo, int64_t T, int cp_size, int cp_rank);

// Causal self-attention of this rank's queries over the whole sequence: qkv_local (B, T/C, 3·Cl) is this
// rank's rows (cp_positions order) of GPT-2's packed projection (Cl = C/tp, n_head_local = n_head/tp);
// returns (B, T/C, Cl). Differentiable: backward runs the algorithm's reverse communication on `cp`.
// attn_p > 0: attention dropout equal to the serial model's (the mask causal_attention(qkv, n_head, p, gen)
// would draw on the whole sequence and all heads, sliced), or an ms::Error naming the algorithm if unsupported.
// (Every algorithm supports it: each cp rank draws the whole (B, n_head_local, T, T) mask from `gen`
// — the same stream on every cp rank, as the serial model draws it — and uses its slice.)
Tensor cp_causal_attention(const Tensor& qkv_local, int64_t n_head_local, CpAlgo algo,
                           Communicator& cp, double attn_p, Generator& gen);

// The causal attention FLOPs cp rank `rank` owes in forward: 4·hs per (query, key) pair that
// causality leaves it (q·k and p·v, 2 FLOPs per multiply-add) — Σ over its query positions q of
// (q + 1) keys, for `n_head` heads (Ulysses: n_head/C heads over all T queries). Ring's last rank
// owes 2C−1 times its first rank's work; zigzag's ranks owe the same. The kernels skip whole key
// ranges per 48-row query tile (online_softmax.cpp), so a diagonal chunk computes up to one tile's
// triangle more than this count.
int64_t cp_attention_flops(CpAlgo algo, int64_t B, int64_t T, int64_t n_head, int64_t head_size,
                           int C, int rank);

}  // namespace ms
