// Ring and zig-zag attention (see ring_attention.h): the ring schedule, the
// causal skipping of chunk pairs, and the autograd node whose backward runs
// the reverse ring.
#include "parallel/cp/ring_attention.h"

#include <memory>

#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/cp/cp_attention.h"
#include "parallel/cp/online_softmax.h"

namespace ms {

namespace {

// User tags on the cp communicator, which carries nothing but attention.
constexpr int kKvTag = 1801, kKvBackTag = 1802, kDkvTag = 1803;

int mod(int a, int c) {
  return ((a % c) + c) % c;
}

// The contiguous runs of a rank's positions: one chunk (ring) or two (zigzag),
// each a range of local rows with its global positions.
struct Chunk {
  int64_t row0, rows;
  std::vector<int64_t> pos;
};

std::vector<Chunk> chunks_of(CpAlgo algo, int64_t T, int C, int rank) {
  std::vector<int64_t> pos = cp_positions(algo, T, C, rank);
  const int parts = algo == CpAlgo::Zigzag ? 2 : 1;
  const int64_t n = int64_t(pos.size()) / parts;
  std::vector<Chunk> out;
  for (int c = 0; c < parts; ++c)
    out.push_back({c * n, n, std::vector<int64_t>(pos.begin() + c * n, pos.begin() + (c + 1) * n)});
  return out;
}

// Whether any key of `k` is visible to any query of `q`: else the pair is
// skipped whole (the blocks above the causal diagonal).
bool visible(const Chunk& q, const Chunk& k) {
  return k.pos.front() <= q.pos.back();
}

Tensor rows_of(const Tensor& t, const Chunk& c) {
  return narrow(t, 1, c.row0, c.rows);
}

struct Saved {
  Tensor x;    // (B, T/C, 3Cl) q|k|v, contiguous
  Tensor out;  // (B, T/C, Cl)
  Tensor lse;  // (B, NH, T/C)
  std::shared_ptr<const DropoutMask> mask;
  CpAlgo algo;
  int64_t T, n_head;
};

// One ring pass: step s holds the K|V block of rank r - s, starts passing it
// on (except at the last step) and calls body(progress, block, its chunks)
// meanwhile. Open MPI moves a large message only inside MPI calls, so the
// body calls progress() (a test() of both transfers) between chunk pairs.
template <typename Body>
void ring_pass(Communicator& cp, const Tensor& own, CpAlgo algo, int64_t T, int tag, Body&& body) {
  const int C = cp.size(), r = cp.rank();
  Tensor cur = own;
  for (int s = 0; s < C; ++s) {
    Tensor next;
    Work rw, sw;
    if (s < C - 1) {
      next = Tensor::empty(own.shape(), own.dtype());
      rw = cp.irecv(next, mod(r - 1, C), tag);
      sw = cp.isend(cur, mod(r + 1, C), tag);
    }
    auto progress = [&rw, &sw] {
      rw.test();
      sw.test();
    };
    body(progress, cur, chunks_of(algo, T, C, mod(r - s, C)));
    rw.wait();
    sw.wait();
    cur = next;
  }
}

Tensor ring_forward(const Tensor& qkv, int64_t NH, CpAlgo algo, Communicator& cp,
                    std::shared_ptr<const DropoutMask> mask) {
  const int C = cp.size(), r = cp.rank();
  const int64_t B = qkv.shape()[0], Tl = qkv.shape()[1], Cl = qkv.shape()[2] / 3, T = Tl * C;
  Tensor x = contiguous(detach(qkv));                // (B, T/C, 3Cl)
  Tensor q = narrow(x, 2, 0, Cl);                    // (B, T/C, Cl), a view
  Tensor kv = contiguous(narrow(x, 2, Cl, 2 * Cl));  // (B, T/C, 2Cl): what travels
  const std::vector<Chunk> mine = chunks_of(algo, T, C, r);
  std::vector<PartialAttention> acc;  // per query chunk
  for (const Chunk& c : mine) acc.push_back(empty_partial(B, c.rows, NH, Cl / NH, x.dtype()));
  ring_pass(cp, kv, algo, T, kKvTag,
            [&](auto&& progress, const Tensor& block, const std::vector<Chunk>& ks) {
              for (size_t i = 0; i < mine.size(); ++i)
                for (const Chunk& kc : ks) {
                  if (!visible(mine[i], kc)) continue;
                  Tensor kb = rows_of(block, kc);
                  attention_accumulate(acc[i], rows_of(q, mine[i]), narrow(kb, 2, 0, Cl),
                                       narrow(kb, 2, Cl, Cl), mine[i].pos, kc.pos, NH, mask.get());
                  progress();
                }
            });
  std::vector<Tensor> outs, lses;
  for (PartialAttention& a : acc) outs.push_back(a.out), lses.push_back(a.lse);
  Tensor out = mine.size() == 1 ? outs[0] : cat(outs, 1);  // (B, T/C, Cl)
  Tensor lse = mine.size() == 1 ? lses[0] : cat(lses, 2);  // (B, NH, T/C)
  if (needs_grad({&qkv})) {
    // detach: the saved output must not hold the node that holds it.
    auto saved = std::make_shared<Saved>(Saved{x, detach(out), lse, mask, algo, T, NH});
    record(out, algo == CpAlgo::Zigzag ? "cp_zigzag_attention" : "cp_ring_attention", {qkv},
           [saved, cp](const Tensor& g) mutable {
             const Saved& s = *saved;
             const int C = cp.size(), r = cp.rank();
             const int64_t Cl = s.x.shape()[2] / 3;
             Tensor dout = contiguous(g);                            // (B, T/C, Cl)
             Tensor delta = attention_delta(dout, s.out, s.n_head);  // (B, NH, T/C)
             Tensor q = narrow(s.x, 2, 0, Cl);
             Tensor kv = contiguous(narrow(s.x, 2, Cl, 2 * Cl));
             Tensor dq = zeros(q.shape(), q.dtype());     // (B, T/C, Cl)
             Tensor dkv = zeros(kv.shape(), kv.dtype());  // (B, T/C, 2Cl), travels
             const std::vector<Chunk> mine = chunks_of(s.algo, s.T, C, r);
             ring_pass(cp, kv, s.algo, s.T, kKvBackTag,
                       [&](auto&& progress, const Tensor& block, const std::vector<Chunk>& ks) {
                         for (const Chunk& qc : mine)
                           for (const Chunk& kc : ks) {
                             if (!visible(qc, kc)) continue;
                             Tensor kb = rows_of(block, kc), db = rows_of(dkv, kc);
                             attention_partial_backward(
                                 rows_of(q, qc), narrow(kb, 2, 0, Cl), narrow(kb, 2, Cl, Cl),
                                 rows_of(dout, qc), contiguous(narrow(s.lse, 2, qc.row0, qc.rows)),
                                 contiguous(narrow(delta, 2, qc.row0, qc.rows)), qc.pos, kc.pos,
                                 s.n_head, s.mask.get(), rows_of(dq, qc), narrow(db, 2, 0, Cl),
                                 narrow(db, 2, Cl, Cl));
                             progress();
                           }
                         // The accumulator follows its block one hop; after the
                         // last step it arrives home (ring_attention.h).
                         Tensor incoming = Tensor::empty(dkv.shape(), dkv.dtype());
                         Work rw = cp.irecv(incoming, mod(r - 1, C), kDkvTag);
                         Work sw = cp.isend(dkv, mod(r + 1, C), kDkvTag);
                         rw.wait();
                         sw.wait();
                         dkv = incoming;
                       });
             return std::vector<Tensor>{cat({dq, dkv}, 2)};  // (B, T/C, 3Cl)
           });
  }
  return out;
}

}  // namespace

Tensor ring_attention(const Tensor& qkv_local, int64_t n_head_local, bool zigzag, Communicator& cp,
                      double attn_p, Generator& gen) {
  const CpAlgo algo = zigzag ? CpAlgo::Zigzag : CpAlgo::Ring;
  const char* name = cp_algo_name(algo);
  MS_CHECK(qkv_local.dim() == 3 && qkv_local.shape()[2] % 3 == 0, "cp attention (", name,
           "): qkv_local must be (B, T/C, 3·Cl), got ", shape_str(qkv_local.shape()));
  const int64_t B = qkv_local.shape()[0], Tl = qkv_local.shape()[1], Cl = qkv_local.shape()[2] / 3,
                T = Tl * cp.size();
  MS_CHECK(n_head_local > 0 && Cl % n_head_local == 0, "cp attention (", name, "): width ", Cl,
           " is not divisible by n_head_local ", n_head_local);
  cp_positions(algo, T, cp.size(), cp.rank());  // T/C rows must cut into the layout's chunks
  std::shared_ptr<const DropoutMask> mask;
  if (attn_p > 0)  // the serial model's whole mask, looked up at our (query, key) positions
    mask = std::make_shared<const DropoutMask>(
        draw_dropout_mask({B, n_head_local, T, T}, attn_p, gen));
  // 16-bit: computed in f32, the output rounded once (autograd/mixed.h).
  if (auto d = mixed::result_dtype({&qkv_local}, "cp attention"))
    return mixed::down(ring_forward(mixed::up(qkv_local), n_head_local, algo, cp, mask), *d);
  MS_CHECK(is_compute_dtype(qkv_local.dtype()), "cp attention (", name,
           "): qkv must be f32/f64 (or bf16/f16), got ", dtype_name(qkv_local.dtype()));
  return ring_forward(qkv_local, n_head_local, algo, cp, mask);
}

}  // namespace ms
