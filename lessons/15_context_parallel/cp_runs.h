// Lesson 15, part 3: the communication of one attention layer under context
// parallelism, run and measured. On cp groups of P = 2 (world ranks {0,1} and
// {2,3}) and P = 4, every rank holds its T/P positions of q, k, v (B, T, C):
//   - ring attention (Liu et al. 2023; Megatron cp_comm_type "p2p"): Q stays,
//     the K and V blocks travel P − 1 hops around the ring (isend/irecv,
//     started before the block's attention is computed, so the transfer can
//     hide behind it), each block's partial result merged with the learner's
//     merge_partials, blocks chosen by the learner's causal_block;
//   - zig-zag: the same ring over 2P chunks, rank r holding chunks r and
//     2P−1−r, so the causal work is even;
//   - DeepSpeed-Ulysses (Jacobs et al. 2023; DeepSpeed's DistributedAttention
//     in deepspeed/sequence/layer.py): all-to-all of q, k and v from
//     [T/P positions, all heads] to [all T, H/P heads], local causal
//     attention, all-to-all of the output back — each all-to-all the
//     library's pairwise exchange (ring.h), so its bytes are measured;
//   - Megatron-SP (Korthikanti et al. 2022): the collectives one layer's
//     forward issues (all-gather before each column-parallel block,
//     reduce-scatter after each row-parallel one), shapes only.
// Each rank's attention output is compared with full causal attention
// computed directly, and what the group's ledger counted is printed per rank
// beside the formula; a byte count off the formula fails.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "lessons/15_context_parallel/lesson.h"
#include "lessons/15_context_parallel/reference.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/communicator.h"
#include "parallel/comm/ledger.h"
#include "parallel/comm/ring.h"
#include "parallel/cp/traffic.h"
#include "tensor/factory.h"

namespace lesson15 {

// One attention layer's activations: x (B, T, C), C = H·D.
constexpr int64_t B = 2, T = 16, H = 4, D = 4, C = H * D;

struct Activations {
  std::vector<double> q, k, v;  // (B, T, C) each, identical on every rank
};
inline Activations activations() {
  return {seeded(B * T * C, 1501, 1.5), seeded(B * T * C, 1502, 1.0), seeded(B * T * C, 1503, 1.0)};
}

// Full causal attention of positions [start, start + n): the reference.
inline Partial reference_rows(const Activations& x, int64_t start, int64_t n) {
  return attend(positions(x.q, B, T, C, start, n), n, x.k, x.v, T, B, H, D,
                [start](int64_t i, int64_t j) { return j <= start + i; });
}

inline ms::Tensor as_f32(const std::vector<double>& v, const ms::Shape& shape) {
  return ms::from_vector(v, shape, ms::DType::F32);
}

// The chunks rank r holds: ring {r} of P, zig-zag {r, 2P−1−r} of 2P.
inline std::vector<int> chunks_of(int r, int P, bool zigzag) {
  return zigzag ? std::vector<int>{r, 2 * P - 1 - r} : std::vector<int>{r};
}

// The learner's merge and causal rule inside a ring. Returns "" or what is
// wrong; `scores` gets the (query, key) pairs this rank computed, per (b, h).
inline std::string run_ring(ms::Communicator& cp, const Activations& x, bool zigzag,
                            int64_t& scores) {
  const int P = cp.size(), r = cp.rank();
  const int n_chunks = zigzag ? 2 * P : P;
  const int64_t c = T / n_chunks;  // positions per chunk
  const std::vector<int> mine = chunks_of(r, P, zigzag);
  const int64_t held = int64_t(mine.size()) * c;  // positions per rank: T/P
  // This rank's K and V, its chunks side by side: (B, T/P, C) each.
  auto gather = [&](const std::vector<double>& full, const std::vector<int>& chunks) {
    std::vector<double> out;
    out.reserve(size_t(B * held * C));
    for (int64_t b = 0; b < B; ++b)
      for (int ch : chunks)
        for (int64_t i = 0; i < c; ++i)
          for (int64_t e = 0; e < C; ++e) out.push_back(full[(b * T + ch * c + i) * C + e]);
    return out;
  };
  ms::Tensor k_cur = as_f32(gather(x.k, mine), {B, held, C}),
             v_cur = as_f32(gather(x.v, mine), {B, held, C});
  ms::Tensor k_next = ms::zeros({B, held, C}), v_next = ms::zeros({B, held, C});
  std::vector<Partial> acc;
  for (size_t m = 0; m < mine.size(); ++m) acc.push_back(empty_partial(B * H * c, D));
  scores = 0;
  int owner = r;  // whose K/V this rank holds at this step
  for (int step = 0; step < P; ++step) {
    std::vector<ms::Work> pending;
    if (step + 1 < P) {  // start the next hop first: it travels while this block computes
      pending.push_back(cp.isend(k_cur, (r + 1) % P, 2 * step));
      pending.push_back(cp.isend(v_cur, (r + 1) % P, 2 * step + 1));
      pending.push_back(cp.irecv(k_next, (r - 1 + P) % P, 2 * step));
      pending.push_back(cp.irecv(v_next, (r - 1 + P) % P, 2 * step + 1));
    }
    const std::vector<double> kh = k_cur.to_vector(), vh = v_cur.to_vector();
    const std::vector<int> theirs = chunks_of(owner, P, zigzag);
    for (size_t qi = 0; qi < mine.size(); ++qi) {
      const std::vector<double> q = positions(x.q, B, T, C, mine[qi] * c, c);
      for (size_t ki = 0; ki < theirs.size(); ++ki) {
        const BlockMask mask = causal_block(mine[qi], theirs[ki]);
        if (mask == BlockMask::Skip) continue;
        const std::vector<double> kb = positions(kh, B, held, C, int64_t(ki) * c, c),
                                  vb = positions(vh, B, held, C, int64_t(ki) * c, c);
        const bool tri = mask == BlockMask::Diagonal;
        scores += tri ? c * (c + 1) / 2 : c * c;
        acc[qi] =
            merge_partials(acc[qi], attend(q, c, kb, vb, c, B, H, D,
                                           [tri](int64_t i, int64_t j) { return !tri || j <= i; }));
      }
    }
    for (ms::Work& w : pending) w.wait();
    std::swap(k_cur, k_next);
    std::swap(v_cur, v_next);
    owner = (owner - 1 + P) % P;
  }
  for (size_t qi = 0; qi < mine.size(); ++qi) {
    const double err = partial_diff(acc[qi], reference_rows(x, mine[qi] * c, c));
    if (err > 1e-9)
      return ms::str_cat("rank ", r, "'s chunk ", mine[qi], " (positions ", mine[qi] * c, "..",
                         (mine[qi] + 1) * c - 1, ") is off by ", err,
                         " from full causal attention after the ring");
  }
  return "";
}

// One all-to-all with the library's pairwise exchange (parallel/comm/ring.h:
// P − 1 steps, at step s rank r sends to r+s and receives from r−s, the own
// block copied locally — what NCCL's all-to-all is made of, grouped
// send/recv), so the ledger's row is measured, not modelled. `pack(dst)`:
// the `n` floats this rank sends to dst; `place(src, block)` stores src's.
template <class Pack, class Place>
void all_to_all_blocks(ms::Communicator& cp, int64_t n, Pack pack, Place place) {
  const int P = cp.size();
  std::vector<double> in;
  in.reserve(size_t(P * n));
  for (int dst = 0; dst < P; ++dst) {
    const std::vector<double> m = pack(dst);
    in.insert(in.end(), m.begin(), m.end());
  }
  ms::Tensor src_blocks = as_f32(in, {P, n}), out = ms::zeros({P, n});  // block j: to / from rank j
  ms::pairwise_all_to_all(cp, src_blocks, out);
  const std::vector<double> got = out.to_vector();
  for (int src = 0; src < P; ++src)
    place(src, std::vector<double>(got.begin() + src * n, got.begin() + (src + 1) * n));
}

// DeepSpeed-Ulysses's forward communication around one attention.
inline std::string run_ulysses(ms::Communicator& cp, const Activations& x) {
  const int P = cp.size(), r = cp.rank();
  const int64_t tl = T / P, cl = C / P, hl = H / P;  // local positions, columns, heads
  // [T/P positions, all heads] -> [all T, H/P heads]: to rank dst go my
  // positions' columns of dst's heads.
  auto scatter_heads = [&](const std::vector<double>& full) {
    std::vector<double> mine = positions(full, B, T, C, r * tl, tl);  // (B, T/P, C)
    std::vector<double> res(size_t(B * T * cl));                      // (B, T, C/P)
    all_to_all_blocks(
        cp, B * tl * cl,
        [&](int dst) {
          std::vector<double> m;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < tl; ++i)
              for (int64_t e = 0; e < cl; ++e) m.push_back(mine[(b * tl + i) * C + dst * cl + e]);
          return m;
        },
        [&](int src, const std::vector<double>& m) {
          for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < tl; ++i)
              for (int64_t e = 0; e < cl; ++e)
                res[(b * T + src * tl + i) * cl + e] = m[(b * tl + i) * cl + e];
        });
    return res;
  };
  const auto q = scatter_heads(x.q), k = scatter_heads(x.k), v = scatter_heads(x.v);
  // Ordinary causal attention over the whole sequence, on this rank's heads.
  const Partial att = attend(q, T, k, v, T, B, hl, D, [](int64_t i, int64_t j) { return j <= i; });
  std::vector<double> o(size_t(B * T * cl));  // (B, T, C/P)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < hl; ++h)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t d = 0; d < D; ++d)
          o[(b * T + i) * cl + h * D + d] = att.out[((b * hl + h) * T + i) * D + d];
  // [all T, H/P heads] -> [T/P positions, all heads]: the output goes home.
  std::vector<double> y(size_t(B * tl * C));  // (B, T/P, C)
  all_to_all_blocks(
      cp, B * tl * cl,
      [&](int dst) {
        std::vector<double> m;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < tl; ++i)
            for (int64_t e = 0; e < cl; ++e) m.push_back(o[(b * T + dst * tl + i) * cl + e]);
        return m;
      },
      [&](int src, const std::vector<double>& m) {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < tl; ++i)
            for (int64_t e = 0; e < cl; ++e)
              y[(b * tl + i) * C + src * cl + e] = m[(b * tl + i) * cl + e];
      });
  // Compare with the reference (f32 on the wire: tolerance for its rounding).
  const Partial want = reference_rows(x, r * tl, tl);
  double err = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < tl; ++i)
        for (int64_t d = 0; d < D; ++d)
          err = std::fmax(err, std::fabs(y[(b * tl + i) * C + h * D + d] -
                                         want.out[((b * H + h) * tl + i) * D + d]));
  if (err > 1e-6)
    return ms::str_cat("Ulysses output on rank ", r, " is off by ", err,
                       " (the checker's own bug)");
  return "";
}

// Measured bytes against the formula: "" or what differs.
inline std::string bytes_problem(const ms::Traffic& t, int64_t want, const char* what) {
  const int64_t sent = t.total().sent;
  if (sent == want) return "";
  return ms::str_cat(what, ": this rank sent ", sent, " B, the formula says ", want, " B");
}

inline void say(ms::Communicator& world, const std::string& s) {
  if (world.rank() == 0) std::printf("%s", s.c_str());
  std::fflush(stdout);
}

inline bool run_context_parallel(ms::Communicator& world) {
  using ms::str_cat;
  const Activations x = activations();
  const int64_t btc = B * T * C;  // one (B, T, C) activation, in floats
  say(world, str_cat("\none attention layer: B = ", B, ", T = ", T, ", C = ", C, " (", H,
                     " heads of ", D, "), f32 on the wire; q, k, v sharded over T\n"));
  for (int P : {2, 4}) {
    ms::Communicator cp = world.split(world.rank() / P, world.rank() % P);
    say(world, str_cat("\ncp = ", P, ": ",
                       P == 2 ? "two cp groups, world ranks {0,1} and {2,3}"
                              : "one cp group, world ranks {0,1,2,3}",
                       ", each rank holding T/P = ", T / P, " positions\n"));
    for (bool zigzag : {false, true}) {
      int64_t scores = 0;
      const ms::Traffic t0 = cp.traffic();
      std::string why = run_ring(cp, x, zigzag, scores);
      const ms::Traffic moved = cp.traffic() - t0;
      const int64_t want = 2 * (P - 1) * (btc / P) * 4;
      // The library's count (parallel/cp/traffic.h) must agree with this one.
      const ms::CpLayerTraffic lib =
          ms::cp_traffic_formula(zigzag ? ms::CpAlgo::Zigzag : ms::CpAlgo::Ring, B, T, C, P);
      MS_CHECK(lib.forward == want, "lesson 15: cp_traffic_formula says ", lib.forward,
               " B, the lesson ", want);
      if (why.empty()) why = bytes_problem(moved, want, zigzag ? "zig-zag ring" : "ring");
      say(world, str_cat("  ", zigzag ? "zig-zag ring" : "ring", " attention (", zigzag ? 2 * P : P,
                         " chunks of ", T / (zigzag ? 2 * P : P),
                         "), K and V passed P − 1 times, measured by the ledger (per rank):\n"));
      ms::lesson::print_traffic_per_rank(world, moved);
      say(world,
          str_cat("    formula: K and V, (P−1) blocks of B·(T/P)·C each: 2·(P−1)/P·B·T·C = 2·",
                  P - 1, "/", P, "·", btc, " floats = ", want, " B per rank\n"));
      // The causal work per rank: what the learner's causal_block let through.
      ms::Tensor all = ms::zeros({world.size()}, ms::DType::I32);
      all.host_data<int32_t>()[world.rank()] = int32_t(scores);
      world.all_reduce(all, ms::ReduceOp::Sum);
      std::string line = "    attention scores computed per (b, h), rank by rank:";
      int64_t hi = 0, total = 0;
      for (int q = 0; q < P; ++q) {  // the first group's ranks; the second repeats them
        const int64_t s = all.host_data<int32_t>()[q];
        line += str_cat(" ", s);
        hi = std::max(hi, s);
        total += s;
      }
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2f", double(hi) * P / double(total));
      say(world, str_cat(line, " (of T(T+1)/2 = ", T * (T + 1) / 2, "; the slowest rank does ",
                         ratio, "x the mean)\n"));
      if (!ms::lesson::agree(
              world, why,
              str_cat("cp = ", P, ": ", zigzag ? "zig-zag ring" : "ring",
                      " attention with your merge and causal rule == full causal attention")))
        return false;
    }
    const ms::Traffic t1 = cp.traffic();
    std::string why = run_ulysses(cp, x);
    const ms::Traffic uly = cp.traffic() - t1;
    const int64_t want_u = 4 * (P - 1) * (btc / P / P) * 4;
    MS_CHECK(ms::cp_traffic_formula(ms::CpAlgo::Ulysses, B, T, C, P).forward == want_u,
             "lesson 15: cp_traffic_formula disagrees with the Ulysses count ", want_u);
    if (why.empty()) why = bytes_problem(uly, want_u, "Ulysses");
    say(world,
        "  DeepSpeed-Ulysses: all-to-all of q, k, v, then of the output, measured (per rank):\n");
    ms::lesson::print_traffic_per_rank(world, uly);
    say(world, str_cat("    formula: 4 all-to-alls, each rank keeping 1/P of its B·(T/P)·C buffer: "
                       "4·(P−1)/P²·B·T·C = 4·",
                       P - 1, "/", P * P, "·", btc, " floats = ", want_u,
                       " B per rank (the paper's 4Nh/P = ", 4 * btc / P * 4,
                       " B counts the kept 1/P too)\n"));
    if (!ms::lesson::agree(
            world, why,
            str_cat("cp = ", P, ": Ulysses == full causal attention, bytes == formula")))
      return false;

    const ms::Traffic t2 = cp.traffic();
    for (int i = 0; i < 2; ++i) {
      ms::Tensor shard = ms::zeros({btc / P}), full = ms::zeros({btc});
      cp.all_gather(shard, full);      // before the column-parallel GEMMs (QKV, then fc)
      cp.reduce_scatter(full, shard);  // after the row-parallel ones (proj, then mlp proj)
    }
    const ms::Traffic sp = cp.traffic() - t2;
    const int64_t want_sp = 4 * (P - 1) * (btc / P) * 4;
    say(world,
        "  Megatron-SP, one layer's forward: 2 all-gathers + 2 reduce-scatters of (B, T, C) (per "
        "rank):\n");
    ms::lesson::print_traffic_per_rank(world, sp);
    say(world, str_cat("    formula: 4·(P−1)/P·B·T·C = ", want_sp, " B per rank: ",
                       double(want_sp) / double(want_u), "x Ulysses's, and the ring's K/V pass is ",
                       double(2 * (P - 1) * (btc / P) * 4) / double(want_u), "x Ulysses's\n"));
    if (!ms::lesson::agree(world, bytes_problem(sp, want_sp, "Megatron-SP"),
                           str_cat("cp = ", P, ": Megatron-SP's collectives == formula")))
      return false;
  }
  return true;
}

}  // namespace lesson15
