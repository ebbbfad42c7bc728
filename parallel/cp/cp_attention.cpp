// The cp algorithms' names, layouts and FLOP counts, and the dispatch to
// ulysses.cpp and ring_attention.cpp.
#include "parallel/cp/cp_attention.h"

#include "parallel/comm/placement.h"
#include "parallel/cp/ring_attention.h"
#include "parallel/cp/ulysses.h"
#include "tensor/error.h"

namespace ms {

const char* cp_algo_name(CpAlgo algo) {
  switch (algo) {
    case CpAlgo::Ulysses:
      return "ulysses";
    case CpAlgo::Ring:
      return "ring";
    case CpAlgo::Zigzag:
      return "zigzag";
  }
  return "?";
}

CpAlgo parse_cp_algo(const std::string& name) {
  for (CpAlgo a : {CpAlgo::Ulysses, CpAlgo::Ring, CpAlgo::Zigzag})
    if (name == cp_algo_name(a)) return a;
  throw Error(str_cat("cp algorithm '", name, "' is not one of: ulysses, ring, zigzag"));
}

std::vector<int64_t> cp_positions(CpAlgo algo, int64_t T, int cp_size, int cp_rank) {
  MS_CHECK(cp_size >= 1 && cp_rank >= 0 && cp_rank < cp_size, "cp_positions: rank ", cp_rank,
           " is not in a cp group of ", cp_size);
  const int64_t pieces = algo == CpAlgo::Zigzag ? 2 * int64_t(cp_size) : cp_size;
  MS_CHECK(T > 0 && T % pieces == 0, "context parallelism (", cp_algo_name(algo),
           "): the sequence length T = ", T, " must divide into ",
           algo == CpAlgo::Zigzag ? "2·cp = " : "cp = ", pieces, " equal chunks (cp = ", cp_size,
           ")", algo == CpAlgo::Zigzag ? "; zigzag cuts the sequence in 2·cp chunks" : "");
  std::vector<int64_t> pos;
  const int64_t n = T / pieces;
  auto chunk = [&](int64_t c) {
    for (int64_t i = 0; i < n; ++i) pos.push_back(c * n + i);
  };
  chunk(cp_rank);
  if (algo == CpAlgo::Zigzag) chunk(2 * int64_t(cp_size) - 1 - cp_rank);
  return pos;
}

int64_t cp_attention_flops(CpAlgo algo, int64_t B, int64_t T, int64_t n_head, int64_t head_size,
                           int C, int rank) {
  int64_t pairs = 0;  // causal (query, key) pairs per head
  if (algo == CpAlgo::Ulysses) {
    MS_CHECK(n_head % C == 0, "cp_attention_flops: ulysses needs n_head ", n_head,
             " divisible by cp ", C);
    return 4 * head_size * B * (n_head / C) * (T * (T + 1) / 2);
  }
  for (int64_t q : cp_positions(algo, T, C, rank)) pairs += q + 1;
  return 4 * head_size * B * n_head * pairs;
}

Tensor cp_causal_attention(const Tensor& qkv_local, int64_t n_head_local, CpAlgo algo,
                           Communicator& cp, double attn_p, Generator& gen) {
  MS_CHECK(attn_p >= 0 && attn_p < 1, "cp_causal_attention (", cp_algo_name(algo),
           "): attention dropout ", attn_p, " must be in [0, 1)");
  // Placements over cp (docs/architecture.md, "Placements"): the queries in
  // and the output out are this rank's positions, sharded along T; a
  // partial qkv (a missing reduction upstream) is refused. The layouts in
  // between (Ulysses' head-sharded blocks, ring's travelling K/V) are views
  // and buffers without placements.
  refuse_placement(qkv_local, MeshAxis::CP, Placement::Kind::Partial, "cp_causal_attention",
                   "attention needs this rank's positions of q, k and v, not partial sums");
  Tensor out = algo == CpAlgo::Ulysses ? ulysses_attention(qkv_local, n_head_local, cp, attn_p, gen)
                                       : ring_attention(qkv_local, n_head_local,
                                                        algo == CpAlgo::Zigzag, cp, attn_p, gen);
  if (cp.size() > 1 && placement_checks_enabled()) {
    copy_placements(out, qkv_local);  // tp: this rank's heads, like its qkv
    place_over(
        out, MeshAxis::CP, cp, Placement::sharded(1, out.dim()),
        std::string("cp attention output (") + cp_algo_name(algo) + ", this rank's positions)");
  }
  return out;
}

}  // namespace ms
