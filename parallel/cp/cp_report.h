// The attention memory of one layer on one cp rank, measured beside its
// formula, for the memory lines of `minispeed train --cp` (as
// parallel/tp/memory_report.h does for tp). The scores are the T² term that
// makes long sequences run out of memory:
//   ulysses    B·(H/C)·T²·4 bytes: whole sequences of H/C heads, the
//              probabilities kept for backward;
//   ring,      B·H·(T/C)²·4 bytes per ring step: one (query block, key block)
//   zigzag     pair at a time (zig-zag: two half-size chunks), freed after the
//              step; backward recomputes them from the saved log-sum-exp;
//   allgather  B·H·T²·4 bytes: every rank scores the whole sequence.
// H = n_head / tp, the heads of this rank's tp shard.
#pragma once
#include <cstdint>
#include <string>

#include "parallel/comm/communicator.h"

namespace ms {

// Collective over `cp`: runs one attention call of `algo` with autograd on a
// random (1, T/C, 3·Cl) q|k|v and reports the bytes the allocator's counter
// (cpu_bytes_allocated) grew by while its output and graph lived — what
// backward keeps — × B, beside the scores by formula. One line.
std::string cp_memory_report(Communicator& cp, const std::string& algo, int64_t B, int64_t T,
                             int64_t n_head_local, int64_t n_embd_local);

}  // namespace ms
