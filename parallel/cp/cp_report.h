// The attention memory of one layer on one cp rank, measured beside its
// formula, for the memory lines of `minispeed train --cp` (as
// parallel/tp/memory_report.h does for tp). Attention is the blocked kernel
// (tensor/cpu/flash_attention.h): it saves the output and the log-sum-exp,
// never the T² scores, so what backward keeps per rank is linear in T:
//   ulysses    q|k|v and the output of H/C heads over all T positions, their
//              lse, and this rank's rows after the all-to-all back;
//   ring,      this rank's output rows and their lse (the K/V blocks that
//   zigzag     travel the ring are freed after each step);
//   allgather  the gathered q|k|v, every row's output and lse (this rank's
//              rows are a view of the output at B = 1).
// The scores B·(H/C)·T² (ulysses), B·H·(T/C)² per block pair (ring) and
// B·H·T² (allgather) exist only one tile at a time; the line prints them as
// "if materialized" (the unfused kernel's memory). H = n_head / tp.
#pragma once
#include <cstdint>
#include <string>

#include "parallel/comm/communicator.h"

namespace ms {

// Collective over `cp`: runs one attention call of `algo` with autograd on a
// random (1, T/C, 3·Cl) q|k|v and reports the bytes the allocator's counter
// (cpu_bytes_allocated) grew by while its output and graph lived — what
// backward keeps — × B, beside cp_attention_kept's formula. One line.
// Elements (f32) one attention call keeps for backward at B = 1, and the formula in words.
struct CpAttentionKept {
  int64_t elements;
  std::string formula;
};
CpAttentionKept cp_attention_kept(const std::string& algo, int64_t T, int64_t C, int64_t H,
                                  int64_t Cl);

std::string cp_memory_report(Communicator& cp, const std::string& algo, int64_t B, int64_t T,
                             int64_t n_head_local, int64_t n_embd_local);

}  // namespace ms
