// Lesson 15 grader (4 ranks): merge_partials and causal_block against full
// attention computed directly (reference.h), then inside a ring.
//
// 1. The merge: two and three partial results over disjoint key blocks must
//    give the attention over their union, in either order, and rows masked in
//    one or both blocks (lse = −inf) must come out right, without NaN. The
//    diagnoses name the classic slips: the old output not rescaled, the max
//    returned where the log-sum-exp belongs, the outputs averaged, added or
//    weighed against the max, NaN from −inf − (−inf) or from a shift by one
//    side's lse (−inf + inf).
// 2. The causal rule on every (query chunk, key chunk) pair of 8 chunks: the
//    diagonal unmasked (the future leaks inside the block), the diagonal
//    skipped (a query loses its own and nearest keys), the past skipped, the
//    future computed.
// 3. Measured (cp_runs.h): the learner's two functions run inside ring
//    attention and zig-zag ring attention on cp groups of 2 and 4 ranks, K and
//    V passed around the ring with send/recv; each rank's output is compared
//    with full causal attention, the ledger's bytes are printed beside
//    2·(P−1)/P·B·T·C, and the attention scores each rank computed (the
//    learner's causal_block decides) show ring's imbalance and zig-zag's fix.
//    Then the Ulysses all-to-all pair and Megatron-SP's collectives of one
//    layer, measured beside their formulas.
// Checks 1 and 2 are local (every rank computes the same thing); verdicts are
// all-reduced (lesson::agree), so every rank stops together.
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "lessons/15_context_parallel/cp_runs.h"
#include "lessons/15_context_parallel/lesson.h"
#include "lessons/15_context_parallel/reference.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using lesson::agree;
using lesson15::attend;
using lesson15::partial_diff;

namespace {

constexpr double kTimeout = 30;
constexpr double kTol = 1e-9;  // f64 sums of a few dozen terms
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// The learner's code does not communicate, so any exception from it becomes
// this rank's verdict (every rank throws the same).
template <class F>
std::string guarded(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return str_cat("your code threw: ", e.what());
  }
  return "";
}

bool has_nan(const Partial& p) {
  for (double x : p.out)
    if (std::isnan(x)) return true;
  for (double x : p.lse)
    if (std::isnan(x)) return true;
  return false;
}
double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) m = std::fmax(m, std::fabs(a[i] - b[i]));
  return m;
}
// out_a·wa(row) + out_b·wb(row): the outputs a wrong merge would give.
template <class Wa, class Wb>
std::vector<double> combine(const Partial& a, const Partial& b, Wa wa, Wb wb) {
  std::vector<double> o(a.out.size());
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t d = 0; d < a.dim; ++d)
      o[i * a.dim + d] = wa(i) * a.out[i * a.dim + d] + wb(i) * b.out[i * a.dim + d];
  return o;
}

// ---- 1. the merge ----

// Query rows: 1 batch row × 4 heads × 6 queries, dim 4; 12 keys, no mask. The
// queries are scaled up so the blocks' log-sum-exps differ by a few units: a
// merge that weighs them wrongly is off by far more than rounding.
constexpr int64_t kHeads = 4, kDim = 4, kQ = 6, kKeys = 12;
struct MergeCase {
  std::vector<double> q, k, v;
  Partial block(int64_t first, int64_t n) const {
    auto kb = lesson15::positions(k, 1, kKeys, kHeads * kDim, first, n);
    auto vb = lesson15::positions(v, 1, kKeys, kHeads * kDim, first, n);
    return attend(q, kQ, kb, vb, n, 1, kHeads, kDim, [](int64_t, int64_t) { return true; });
  }
};
MergeCase merge_case() {
  const int64_t C = kHeads * kDim;
  return {lesson15::seeded(kQ * C, 151, 2.5), lesson15::seeded(kKeys * C, 152, 1.0),
          lesson15::seeded(kKeys * C, 153, 1.0)};
}

std::string shape_problem(const Partial& got, const Partial& want) {
  if (got.rows == want.rows && got.dim == want.dim &&
      got.out.size() == size_t(want.rows * want.dim) && got.lse.size() == size_t(want.rows))
    return "";
  return str_cat("merge_partials returned rows ", got.rows, ", dim ", got.dim, ", ", got.out.size(),
                 " outputs and ", got.lse.size(), " lse values; expected rows ", want.rows,
                 ", dim ", want.dim, ", out [rows·dim] = ", want.rows * want.dim,
                 " and lse [rows] = ", want.rows, " (empty_partial(a.rows, a.dim) makes one)");
}

// a and b over disjoint blocks, `got` = merge_partials(a, b), `want` = attention over both.
std::string diagnose_merge(const Partial& a, const Partial& b, const Partial& got,
                           const Partial& want, const char* what) {
  if (std::string s = shape_problem(got, want); !s.empty()) return s;
  if (has_nan(got))
    return str_cat(what,
                   ": the result holds NaN although no input is masked (every lse is finite)");
  std::vector<double> hi(a.lse.size());
  for (size_t i = 0; i < hi.size(); ++i) hi[i] = std::fmax(a.lse[i], b.lse[i]);
  if (max_diff(got.lse, want.lse) > kTol) {
    if (max_diff(got.lse, hi) <= kTol)
      return str_cat(
          what, ": lse = max(lse_a, lse_b), the MAX, where the log-sum-exp of the union belongs: ",
          "lse = m + log(e^(lse_a − m) + e^(lse_b − m)) with m = max(lse_a, lse_b). The max is ",
          "only the shift that keeps exp from overflowing (what FlashAttention keeps as its "
          "running ",
          "m); the lse must carry the whole mass of the blocks. With the max, the NEXT merge ",
          "weighs everything merged so far as if its mass were its single largest term — too ",
          "little, so the ring's later blocks get too much weight (lse off by up to ",
          max_diff(got.lse, want.lse), " here).");
    return str_cat(
        what, ": lse is off by up to ", max_diff(got.lse, want.lse),
        ": the union's log-sum-exp is log(e^lse_a + e^lse_b), computed as m + log(e^(lse_a "
        "− m) + e^(lse_b − m)), m = max(lse_a, lse_b)");
  }
  const double err = max_diff(got.out, want.out);
  if (err <= kTol) return "";
  auto w = [&](const Partial& p) {
    return [&](int64_t i) { return std::exp(p.lse[i] - want.lse[i]); };
  };
  auto one = [](int64_t) { return 1.0; };
  auto half = [](int64_t) { return 0.5; };
  auto by_max = [&](const Partial& p) {
    return [&](int64_t i) { return std::exp(p.lse[i] - hi[i]); };
  };
  if (max_diff(got.out, combine(a, b, one, w(b))) <= kTol ||
      max_diff(got.out, combine(a, b, w(a), one)) <= kTol)
    return str_cat(
        what,
        ": lse is right, but one output was NOT RESCALED: out = out_a + e^(lse_b − lse)·out_b ",
        "(or the mirror image). Each partial is a softmax normalised over ITS OWN block; in the ",
        "union its share is e^(lse_own − lse_union) < 1, so BOTH outputs — the old (accumulated) "
        "one ",
        "too — are multiplied by their share: out = e^(lse_a − lse)·out_a + e^(lse_b − "
        "lse)·out_b. ",
        "(FlashAttention's loop rescales the old accumulator by e^(m_old − m_new) for the same ",
        "reason.) Off by up to ", err, ".");
  if (max_diff(got.out, combine(a, b, half, half)) <= kTol)
    return str_cat(what,
                   ": out = (out_a + out_b) / 2, the plain average: that is right only when both ",
                   "blocks hold the same softmax mass (lse_a = lse_b). Weigh each output by its ",
                   "block's share of the union, e^(lse_own − lse). Off by up to ", err, ".");
  if (max_diff(got.out, combine(a, b, one, one)) <= kTol)
    return str_cat(
        what, ": out = out_a + out_b: each is already normalised, so the sum weighs 2 in ",
        "total. Weigh each by e^(lse_own − lse), shares that add up to 1. Off by up to ", err, ".");
  if (max_diff(got.out, combine(a, b, by_max(a), by_max(b))) <= kTol)
    return str_cat(
        what, ": out = e^(lse_a − m)·out_a + e^(lse_b − m)·out_b with m the max: the shares ",
        "are taken against the max, not against the union's lse, so they add up to more ",
        "than 1. Divide by e^(lse − m), i.e. use e^(lse_own − lse). Off by up to ", err, ".");
  return str_cat(what, ": lse is right but out is off by up to ", err,
                 ": out = e^(lse_a − lse)·out_a + e^(lse_b − lse)·out_b, row by row");
}

// Rows masked in a only, in b only, in both: each must be what a softmax over
// the union gives, and never NaN.
std::string diagnose_masked(const Partial& got, const Partial& want, const std::vector<int>& kind) {
  if (std::string s = shape_problem(got, want); !s.empty()) return s;
  for (int64_t i = 0; i < want.rows; ++i) {
    bool nan = std::isnan(got.lse[i]);
    for (int64_t d = 0; d < want.dim; ++d) nan = nan || std::isnan(got.out[i * want.dim + d]);
    if (nan && kind[i] == 3)
      return str_cat(
          "row ", i,
          " is fully masked in BOTH partials (lse_a = lse_b = −inf) and your merge made ",
          "NaN of it: m = max(−inf, −inf) = −inf, and e^(lse_a − m) = e^(−inf − (−inf)) = e^NaN. ",
          "A row with no visible key in either block must stay the empty partial (out 0, lse ",
          "−inf): test for it before the shift (FlashAttention's softmax does: a row whose max is "
          "−inf ",
          "is shifted by 0, \"we don't want (-inf - (-inf)) since that would give NaN\"). It "
          "happens in real runs: padded queries, document masks, sliding windows, ",
          "and an accumulator that starts empty and meets a fully masked block.");
    if (nan) {
      const char* m = kind[i] == 1 ? "a" : "b";  // the masked side
      const char* o = kind[i] == 1 ? "b" : "a";
      return str_cat(
          "row ", i, " is masked in ", m, " only (its lse = −inf, out 0) and your merge made NaN ",
          "of it: the other block alone must come through unchanged. e^(−inf − lse) = 0 is ",
          "fine; −inf − (−inf), −inf + inf and 0·inf are not: shift by the max of the two lse ",
          "(finite whenever either is), never by one side's own (with lse_", m, " = −inf, lse_", o,
          " − lse_", m, " = +inf and lse_", m, " + log(…) = −inf + inf)");
    }
  }
  double err = partial_diff(got, want);
  if (err <= kTol) return "";
  for (int64_t i = 0; i < want.rows; ++i) {
    std::vector<double> go(got.out.begin() + i * want.dim, got.out.begin() + (i + 1) * want.dim),
        wo(want.out.begin() + i * want.dim, want.out.begin() + (i + 1) * want.dim);
    if (max_diff(go, wo) <= kTol &&
        (got.lse[i] == want.lse[i] || std::fabs(got.lse[i] - want.lse[i]) <= kTol))
      continue;
    const char* what = kind[i] == 3   ? "masked in both (want out 0, lse −inf)"
                       : kind[i] == 1 ? "masked in a only (want b's row unchanged)"
                       : kind[i] == 2 ? "masked in b only (want a's row unchanged)"
                                      : "masked in neither";
    return str_cat("row ", i, ", ", what, ": got lse ", got.lse[i], " and out off by ",
                   max_diff(go, wo), " (want lse ", want.lse[i], ")");
  }
  return str_cat("off by ", err);
}

bool check_merge(Communicator& world) {
  const MergeCase mc = merge_case();
  const Partial a = mc.block(0, 7), b = mc.block(7, 5), ab = mc.block(0, 12);
  Partial got;
  std::string why = guarded([&] { got = merge_partials(a, b); });
  if (why.empty()) why = diagnose_merge(a, b, got, ab, "merge(a over keys 0-6, b over keys 7-11)");
  if (why.empty()) {
    why = guarded([&] { got = merge_partials(b, a); });
    if (why.empty()) why = diagnose_merge(b, a, got, ab, "merge(b, a), the other order");
  }
  if (!agree(world, why, "merge_partials(a, b) == attention over A ∪ B (24 query rows, 12 keys)"))
    return false;

  // The ring merges P times into one accumulator that starts empty.
  const Partial p0 = mc.block(0, 5), p1 = mc.block(5, 4), p2 = mc.block(9, 3);
  Partial first;
  why = guarded([&] {
    first = merge_partials(empty_partial(a.rows, a.dim), p0);
    got = merge_partials(merge_partials(first, p1), p2);
  });
  if (why.empty() && has_nan(first))
    why = str_cat(
        "merge(empty, p) made NaN: the empty accumulator (out 0, lse −inf in every row) must be ",
        "the merge's identity, merge(empty, p) == p. Shift by the max of the two lse (finite ",
        "whenever either is), never by one side's own: with lse_a = −inf, lse_b − lse_a = +inf ",
        "and lse_a + log(…) = −inf + inf = NaN. Every ring starts from an empty accumulator.");
  else if (why.empty() && partial_diff(first, p0) > kTol)
    why = str_cat("merge(empty, p) is off by ", partial_diff(first, p0),
                  " from p: the empty partial (out 0, lse −inf: no keys) must be the merge's ",
                  "identity — its share of the union is e^(−inf − lse) = 0");
  else if (why.empty() && partial_diff(got, ab) > kTol)
    why = str_cat("merge(merge(merge(empty, keys 0-4), keys 5-8), keys 9-11) is off by ",
                  partial_diff(got, ab),
                  " from attention over all 12 keys, although one merge of two blocks was right: ",
                  "does your merge assume its inputs were never merged before?");
  if (!agree(world, why,
             "an accumulator: empty, then three blocks merged in, == attention over all"))
    return false;

  // Rows 0-3 masked in a only, 4-7 in b only, 8-11 in both; the rest in neither.
  Partial ma = a, mb = b, want = ab;
  std::vector<int> kind(static_cast<size_t>(a.rows), 0);
  for (int64_t i = 0; i < 12; ++i) {
    kind[i] = i < 4 ? 1 : i < 8 ? 2 : 3;
    Partial& m = kind[i] == 2 ? mb : ma;
    for (Partial* p : kind[i] == 3 ? std::vector<Partial*>{&ma, &mb} : std::vector<Partial*>{&m}) {
      p->lse[i] = kNegInf;
      for (int64_t d = 0; d < a.dim; ++d) p->out[i * a.dim + d] = 0;
    }
    const Partial& src = kind[i] == 1 ? b : a;
    want.lse[i] = kind[i] == 3 ? kNegInf : src.lse[i];
    for (int64_t d = 0; d < a.dim; ++d)
      want.out[i * a.dim + d] = kind[i] == 3 ? 0 : src.out[i * a.dim + d];
  }
  why = guarded([&] { got = merge_partials(ma, mb); });
  if (why.empty()) why = diagnose_masked(got, want, kind);
  return agree(world, why, "fully masked rows (lse = −inf in a, in b, in both): right, no NaN");
}

// ---- 2. the causal rule ----

const char* mask_name(BlockMask m) {
  return m == BlockMask::Skip ? "Skip" : m == BlockMask::Diagonal ? "Diagonal" : "Full";
}

std::string diagnose_causal() {
  constexpr int n = 8;
  std::string why;
  BlockMask got[n][n];
  why = guarded([&] {
    for (int q = 0; q < n; ++q)
      for (int k = 0; k < n; ++k) got[q][k] = causal_block(q, k);
  });
  if (!why.empty()) return why;
  if (got[3][3] == BlockMask::Full)
    return "causal_block(3, 3) = Full: a query block attends its OWN block unmasked, so query i "
           "sees "
           "keys i+1 .. of its block — the future leaks inside the diagonal block (the loss looks "
           "great and the model learns to copy). The diagonal block is the causal triangle: "
           "Diagonal.";
  if (got[3][3] == BlockMask::Skip)
    return "causal_block(3, 3) = Skip: the diagonal block is skipped, so every query loses its own "
           "key "
           "and the nearest ones, and the first chunk's queries see no key at all (lse = −inf: NaN "
           "or "
           "zeros out of the softmax). A `k < q` that should be `k <= q`: the diagonal is "
           "computed, "
           "with the triangle mask (Diagonal).";
  for (int q = 0; q < n; ++q)
    for (int k = 0; k < n; ++k) {
      const BlockMask want = k < q    ? BlockMask::Full
                             : k == q ? BlockMask::Diagonal
                                      : BlockMask::Skip;
      if (got[q][k] == want) continue;
      if (k > q)
        return str_cat("causal_block(", q, ", ", k, ") = ", mask_name(got[q][k]), ": key chunk ", k,
                       " lies entirely AFTER query chunk ", q,
                       " — its keys are all in the future; ",
                       "Skip it (that is half of ring attention's saving under the causal mask)");
      return str_cat("causal_block(", q, ", ", k, ") = ", mask_name(got[q][k]), ": key chunk ", k,
                     " lies entirely BEFORE query chunk ", q,
                     " — every query sees every key: Full, ", "no mask");
    }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  return lesson::run_ranks(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    MS_CHECK(world.size() == 4, "lesson 15 runs on 4 ranks (mpirun -np 4), got ", world.size());
    if (world.rank() == 0)
      std::printf("checking merge_partials and causal_block against attention computed directly\n");
    if (!check_merge(world)) return lesson::finish(world, false);
    if (!agree(world, diagnose_causal(),
               "causal_block: Full below the diagonal, Diagonal on it, Skip above (8 chunks)"))
      return lesson::finish(world, false);
    const bool ok = lesson15::run_context_parallel(world);
    return lesson::finish(world, ok);
  });
}
