// What one cp rank sends per attention layer, by algorithm: the formula the
// ledger's measured bytes are set beside (parallel/comm/ledger.h), as
// parallel/tp/traffic.h and parallel/pp/traffic.h do for tp and pp.
// B = micro-batch, T = the whole sequence, Cl = the attention width on this
// rank (n_embd / tp), C = cp size, e = bytes per element (4 for f32).
//
//   Ulysses, forward: all_to_all of this rank's (B, T/C, 3Cl) q|k|v, then of
//     the (B, T, Cl/C) output; each keeps 1/C of its buffer, so it sends
//       (C−1)/C · (3 + 1) · B·(T/C)·Cl·e = 4·(C−1)/C² · B·T·Cl·e
//     — the DeepSpeed-Ulysses paper's 4Nh/P per link when C−1 ≈ C. Backward:
//     the same two all-to-alls reversed (of dout and of dqkv): the same bytes.
//   Ring and zigzag, forward: the (B, T/C, 2Cl) K|V block of a rank passes
//     C−1 hops (every step but the last sends the block in hand):
//       2·(C−1)/C · B·T·Cl·e (send rows).
//     Backward: K|V travel the C−1 hops again, and the dK|dV accumulator of
//     every block travels C hops, back to its owner:
//       2·(C−1)/C · B·T·Cl·e + 2·B·T·Cl·e = 2·(2C−1)/C · B·T·Cl·e.
//   Causality does not shorten the ring: a block nobody later needs is still
//   relayed (as ring-flash-attention and Megatron's p2p do), so the bytes are
//   the same on every rank, ring or zigzag.
#pragma once
#include <cstdint>
#include <string>

#include "parallel/comm/ledger.h"
#include "parallel/cp/cp_attention.h"

namespace ms {

struct CpLayerTraffic {
  CommOp op = CommOp::Send;  // the ledger row: AllToAll (Ulysses) or Send (ring, zigzag)
  int64_t forward = 0;       // bytes one cp rank sends per layer, forward
  int64_t backward = 0;      // and in backward (a recomputed layer adds `forward` again)
  std::string rule;          // the formula in words with the numbers put in
};

CpLayerTraffic cp_traffic_formula(CpAlgo algo, int64_t B, int64_t T, int64_t Cl, int C,
                                  int64_t elem_bytes = 4);

}  // namespace ms
