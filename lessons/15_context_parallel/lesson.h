// Lesson 15: sequence and context parallelism. You write the two pieces of
// ring attention that hold its arithmetic — the online-softmax merge of two
// partial attention results, and which key block a query block may see under
// the causal mask — in exercise.cpp; check.cpp checks them against full
// attention computed directly, then runs them inside a ring (and a zig-zag
// ring) on 2 and 4 ranks and prints what the ring and Ulysses's all-to-alls
// moved, from the communication ledger.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

// Attention of some query rows over ONE block of keys, the state ring
// attention keeps per query row (Liu et al. 2023, "Ring Attention"; FlashAttention's
// (O, L) pair, Dao et al. 2022). For query row i and the keys j of the block it
// may see, with scores s_ij = q_i·k_j / sqrt(dim):
//   lse[i]          = log Σ_j exp(s_ij)                            (the log-sum-exp)
//   out[i·dim + d]  = Σ_j exp(s_ij − lse[i]) · v_j[d]              (softmax over the block, times V)
// A row that may see NO key of the block (a fully masked row) has lse = −inf
// and out = 0: the empty sum. A partial over no keys at all, `empty_partial`,
// is what an accumulator starts as.
struct Partial {
  int64_t rows = 0, dim = 0;
  std::vector<double> out;  // [rows, dim], row-major
  std::vector<double> lse;  // [rows]
};

inline Partial empty_partial(int64_t rows, int64_t dim);

// TODO 1 (exercise.cpp). `a` is the attention of the query rows over key
// block A, `b` over key block B (disjoint blocks, same rows, same dim).
// Return the attention over A ∪ B: the (out, lse) that one softmax over all
// of A's and B's keys would give — exact, not approximate, and in any order of
// a and b. Rows where a or b (or both) are fully masked (lse = −inf) must come
// out right too: no NaN, and a row masked in both stays (out 0, lse −inf).
Partial merge_partials(const Partial& a, const Partial& b);

// Which keys of one block a query block may see under the causal mask. The
// sequence is cut into equal-length chunks numbered 0, 1, ... in sequence
// order; a chunk's queries and keys have the same positions.
enum class BlockMask {
  Skip,      // no query of the block may see any key of it: compute nothing
  Diagonal,  // query position i sees key position j only where j <= i (the causal triangle)
  Full,      // every query sees every key: no mask
};
// TODO 2 (exercise.cpp): the mask of query chunk `q_chunk` over key chunk
// `k_chunk` (both in [0, n_chunks)).
BlockMask causal_block(int q_chunk, int k_chunk);

inline Partial empty_partial(int64_t rows, int64_t dim) {
  Partial p;
  p.rows = rows;
  p.dim = dim;
  p.out.assign(static_cast<size_t>(rows * dim), 0.0);
  p.lse.assign(static_cast<size_t>(rows), -std::numeric_limits<double>::infinity());
  return p;
}
