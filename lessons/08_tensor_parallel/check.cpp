// Lesson 08 grader (4 ranks): row_parallel_shard and my_row_parallel_linear
// against the serial Conv1D layer y = x·W + b, first as two tensor-parallel
// groups of t = 2 ({0,1} and {2,3}, each on its own data, so a sum over the
// wrong group shows), then as one group of t = 4. Every rank builds the same
// serial tensors from a seed, so the reference needs no communication; each
// rank checks its shard, its output, and its gradients (dx and dw of its
// shard, the whole db). Verdicts are all-reduced (lesson::agree): all ranks
// agree and the first failing rank explains, naming the classic mistakes —
// bias added on every rank, no all-reduce or one over the world instead of
// tp, the wrong split dim, an all-reduce in backward, a bias gradient summed
// over tp.
//
// What the layer moved is read from the tp group's communication ledger
// (parallel/comm/ledger.h) and printed per rank beside Megatron's count (one
// all-reduce forward, nothing backward); more than that fails. After a PASS
// it measures why tensor parallelism stays inside a node (tp_vs_dp.h).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "lessons/08_tensor_parallel/lesson.h"
#include "lessons/08_tensor_parallel/tp_vs_dp.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/ledger.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using lesson::agree;
using lesson08::leaf;
using lesson08::seeded;

namespace {

constexpr double kTimeout = 20;
// in and out differ, so a weight split on the wrong dim cannot multiply x.
constexpr int64_t B = 2, T = 6, IN = 24, OUT = 20;

// max |a - b|; infinity when undefined or the shapes differ.
double diff(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape()) return INFINITY;
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::fmax(m, std::fabs(x[i] - y[i]));
  return m;
}
double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::fmax(m, std::fabs(v));
  return m;
}
// a == b up to f32 rounding of sums of a few dozen products.
bool near(const Tensor& a, const Tensor& b) {
  return diff(a, b) <= 1e-4 * std::fmax(1.0, max_abs(b));
}
std::string shape_of(const Tensor& t) {
  return t.defined() ? shape_str(t.shape()) : "an undefined tensor";
}

// Runs the learner's code. The untouched stubs throw "TODO: ..." on every
// rank before any communication, so that error can become an ordinary FAIL
// that all ranks agree on; any other error aborts the job with its message
// (ms::run_distributed), since one rank may then be inside a collective.
template <class F>
std::string guarded(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).rfind("TODO", 0) != 0) throw;
    return str_cat("your code threw: ", e.what());
  }
  return "";
}

// ---- 1. which rows ----

std::string diagnose_shard(const Tensor& got, const Tensor& W, int r, int t) {
  const int64_t k = IN / t;
  const Tensor want = narrow(W, 0, r * k, k);
  if (got.defined() && got.shape() == want.shape() && diff(got, want) == 0) return "";
  if (got.defined() && got.shape() == Shape{IN, OUT / t})
    return str_cat(
        "row_parallel_shard returned ", shape_of(got), ": you split the COLUMNS (dim 1, ",
        "out), the column-parallel rule. A row-parallel layer splits the rows, dim 0 of ",
        "the Conv1D weight [in, out] = [", IN, ", ", OUT, "], giving [", k, ", ", OUT,
        "]: rank r multiplies input features [r·in/t, (r+1)·in/t) and needs exactly ",
        "those rows. (Megatron's RowParallelLinear splits dim 1 of its [out, in] ",
        "nn.Linear weight: the transpose, so the dims flip.)");
  if (!got.defined() || got.shape() != want.shape())
    return str_cat("row_parallel_shard returned ", shape_of(got), "; rank ", r, " of t = ", t,
                   " keeps rows [", r * k, ", ", (r + 1) * k, ") of W ", shape_str(W.shape()),
                   ": shape [", k, ", ", OUT, "]");
  for (int q = 0; q < t; ++q)
    if (diff(got, narrow(W, 0, q * k, k)) == 0)
      return str_cat("rank ", r, " got rows [", q * k, ", ", (q + 1) * k, ") — block ", q,
                     ", not block ", r, ": rank r of the tp group keeps block r = tp.rank() ",
                     "(the rows that multiply the input features it holds)");
  return str_cat("rank ", r, "'s shard has the right shape but not rows [", r * k, ", ",
                 (r + 1) * k, ") of W: take one contiguous block of rows, block tp.rank()");
}

// ---- 2. forward ----

// Megatron's count, in the ledger's ring model: g forward is one all-reduce
// of (B, T, out) floats, 2(t-1)/t of it per rank; backward moves nothing.
int64_t megatron_forward_bytes(int t) {
  return 2 * (t - 1) * (B * T * OUT / t) * 4;
}

// `y_world`: what an all-reduce over all 4 ranks instead of tp would give
// (both groups' products summed, + b); undefined when tp is the world.
std::string diagnose_forward(const Tensor& y, const Tensor& ys, const Tensor& y_world,
                             const Tensor& x, const Tensor& w, const Tensor& b, int t,
                             const Traffic& moved) {
  if (!y.defined() || y.shape() != ys.shape())
    return str_cat("my_row_parallel_linear returned ", shape_of(y), "; expected the full output ",
                   shape_str(ys.shape()), " (B, T, out) on every rank");
  if (near(y, ys)) {
    const int64_t sent = moved.total().sent, want = megatron_forward_bytes(t);
    if (sent <= want) return "";
    return str_cat("the output is right, but the forward sent ", sent,
                   " B on this rank; Megatron's g is one all-reduce of (B, T, out): ", want,
                   " B (table above). Sum the partial products with one all_reduce.");
  }
  if (y_world.defined() && near(y, y_world))
    return "y is the sum over all 4 world ranks — both tp groups' products, each group with its "
           "own data: your all-reduce ran over the world, not over `tp`. Reduce over the "
           "tensor-parallel group you are given (Megatron: get_tensor_model_parallel_group()); "
           "the data-parallel replicas beside it compute other batches.";
  NoGradGuard no_grad;
  const Tensor partial = linear(detach(x), detach(w));  // this rank's term of the sum
  const Tensor nobias = sub(ys, b);
  if (near(y, add(ys, mul(b, double(t - 1)))))
    return str_cat("y = x·W + ", t, "·b: off by (t−1)·b. The bias was added on every rank BEFORE ",
                   "the all-reduce, so the sum counts it t = ", t, " times. Add b once, after the ",
                   "all-reduce (Megatron: GEMM without bias, reduce, then output + bias).");
  if (near(y, add(partial, b)) || near(y, partial))
    return str_cat("y is this rank's own partial product x_r·W_r", near(y, partial) ? "" : " + b",
                   ", not the sum over tp: the all-reduce is missing. Each rank multiplies only ",
                   "its in/t features, so x·W = Σ_r x_r·W_r needs all_reduce(Sum) over tp.");
  if (near(y, nobias)) return "y = x·W without the bias: add b (once, after the all-reduce).";
  if (near(y, add(mul(nobias, 1.0 / t), b)))
    return str_cat("y = x·W/", t, " + b: the partial products were AVERAGED over tp. They are ",
                   "terms of one sum: ReduceOp::Sum.");
  return str_cat("y is off by up to ", diff(y, ys), " (largest |y| ", max_abs(ys),
                 "): expected x_full·W + b, where x_full·W = Σ_r x_r·W_r (all_reduce Sum)");
}

// ---- 3. backward ----

// `dw_summed_over_tp`: Σ over the group's ranks r' of x_r'ᵀ·dy, what all-reducing dw gives.
std::string diagnose_backward(const Tensor& x, const Tensor& w, const Tensor& b,
                              const Tensor& want_dx, const Tensor& want_dw, const Tensor& want_db,
                              const Tensor& dw_summed_over_tp, int t, const Traffic& moved) {
  if (!x.grad().defined() || !w.grad().defined() || !b.grad().defined())
    return str_cat("after backward, x.grad is ", shape_of(x.grad()), ", w.grad ",
                   shape_of(w.grad()), ", b.grad ", shape_of(b.grad()),
                   ": record ONE Node with inputs {x, w, b} and return {dx, dw, db}");
  const bool dx_ok = near(x.grad(), want_dx), dw_ok = near(w.grad(), want_dw),
             db_ok = near(b.grad(), want_db);
  const Tensor tdx = mul(want_dx, double(t)), tdw = mul(want_dw, double(t)),
               tdb = mul(want_db, double(t));
  if (near(x.grad(), tdx) && near(w.grad(), tdw) && near(b.grad(), tdb))
    return str_cat("dx, dw and db are all t = ", t, " times too big: you all-reduced dy in ",
                   "backward too. g's backward is the IDENTITY: dy is already the same on every ",
                   "rank (everything after the layer is replicated), so summing it over tp ",
                   "counts it t times. Only f, before a column-parallel layer, all-reduces in ",
                   "backward.");
  if (dx_ok && db_ok && near(w.grad(), dw_summed_over_tp))
    return str_cat("dw is the SUM over the ", t, " tp ranks of each rank's x_rᵀ·dy (dx and db are ",
                   "right): you all-reduced dw in backward. Each rank's w is a different block of ",
                   "W's rows, so its gradient x_rᵀ·dy belongs to that block alone, and summing ",
                   "adds the other blocks' gradients into it. A sharded weight's gradient is ",
                   "never reduced over tp — in a row- or a column-parallel layer; all-reducing ",
                   "weight gradients is data parallelism's step, across replicas of the SAME ",
                   "weights.");
  if (dx_ok && dw_ok && near(b.grad(), tdb))
    return str_cat("db is t = ", t, " times too big (dx and dw are right): the bias gradient was ",
                   "summed over tp. Every rank holds the whole dy, so each computes the whole ",
                   "db = Σ dy by itself; the bias is replicated, not split.");
  if (dx_ok && dw_ok && db_ok) {
    if (moved.total().sent == 0) return "";
    return str_cat("the gradients are right, but the backward sent ", moved.total().sent,
                   " B on this rank (table above). g's backward is the identity: every rank ",
                   "already has dy, and dx, dw, db need only this rank's x and w. Send nothing.");
  }
  std::string s = "wrong gradient(s):";
  if (!dx_ok)
    s += str_cat(" dx ", shape_of(x.grad()), " off by ", diff(x.grad(), want_dx),
                 " (want dy·W_rᵀ, ", shape_str(want_dx.shape()), ");");
  if (!dw_ok)
    s += str_cat(" dw ", shape_of(w.grad()), " off by ", diff(w.grad(), want_dw),
                 " (want x_rᵀ·dy over all B·T rows, ", shape_str(want_dw.shape()), ");");
  if (!db_ok)
    s += str_cat(" db ", shape_of(b.grad()), " off by ", diff(b.grad(), want_db),
                 " (want Σ dy over B and T, [", OUT, "]);");
  return s;
}

void print_megatron_count(Communicator& world, int t) {
  if (world.rank() != 0) return;
  std::printf(
      "    Megatron's RowParallelLinear (formula): forward one all-reduce (g) of B·T·out = %lld "
      "floats, 2(t-1)/t·%lld·4 = %lld B per rank; backward none (g's backward is the identity)\n",
      (long long)(B * T * OUT), (long long)(B * T * OUT), (long long)megatron_forward_bytes(t));
  std::fflush(stdout);
}

bool check_t(Communicator& world, int t) {
  Communicator tp = world.split(world.rank() / t, world.rank() % t);
  const int r = tp.rank(), group = world.rank() / t;
  const int64_t k = IN / t;
  if (world.rank() == 0)
    std::printf("\nt = %d: %s\n", t,
                t == 2 ? "two tp groups, world ranks {0,1} and {2,3}, each on its own data"
                       : "one tp group, world ranks {0,1,2,3}");
  // Each group its own data: a sum over the wrong ranks mixes two groups' terms.
  auto seed = [t](int g) { return uint64_t(1000 * t + 10 * g); };
  const Tensor X = seeded({B, T, IN}, seed(group) + 1), W = seeded({IN, OUT}, seed(group) + 2, 0.3),
               b = seeded({OUT}, seed(group) + 3), G = seeded({B, T, OUT}, seed(group) + 4);
  Tensor y_world;  // every group's x·W summed, + b: an all-reduce over the world
  if (world.size() > t) {
    NoGradGuard no_grad;
    y_world = b;
    for (int g = 0; g < world.size() / t; ++g)
      y_world = add(y_world,
                    linear(seeded({B, T, IN}, seed(g) + 1), seeded({IN, OUT}, seed(g) + 2, 0.3)));
  }
  Tensor xs = leaf(X), ws = leaf(W), bs = leaf(b);
  Tensor ys = linear(xs, ws, bs);  // the serial layer
  sum(ys * G).backward();

  Tensor shard;
  std::string why = guarded([&] { shard = row_parallel_shard(W, tp); });
  if (why.empty()) why = diagnose_shard(shard, W, r, t);
  if (!agree(world, why,
             str_cat("t = ", t, ": row_parallel_shard keeps rows [r·", k, ", (r+1)·", k, ") of W [",
                     IN, ", ", OUT, "]")))
    return false;

  Tensor x = leaf(narrow(X, 2, r * k, k)), w = leaf(narrow(W, 0, r * k, k)), bb = leaf(b);
  Tensor y;
  const Traffic t0 = tp.traffic();
  why = guarded([&] { y = my_row_parallel_linear(tp, x, w, bb); });
  const Traffic fwd = tp.traffic() - t0;
  if (why.empty()) why = diagnose_forward(y, ys, y_world, x, w, b, t, fwd);
  if (world.rank() == 0) std::printf("  forward, measured by the ledger (per rank):\n");
  lesson::print_traffic_per_rank(world, fwd);
  print_megatron_count(world, t);
  if (!agree(world, why, str_cat("t = ", t, ": forward, y = x·W + b on every rank"))) return false;

  // Only now, with every rank's forward right: a backward with a collective
  // on some ranks only would hang.
  const Traffic t1 = tp.traffic();
  if (!y.requires_grad())
    why =
        "y does not require grad: record ONE Node (ms::record) with inputs {x, w, b} when "
        "ms::needs_grad({&x, &w, &b})";
  else
    why = guarded([&] { sum(y * G).backward(); });
  const Traffic bwd = tp.traffic() - t1;
  if (why.empty()) {
    NoGradGuard no_grad;
    Tensor dw_summed = narrow(ws.grad(), 0, 0, k);
    for (int rr = 1; rr < t; ++rr) dw_summed = add(dw_summed, narrow(ws.grad(), 0, rr * k, k));
    why = diagnose_backward(x, w, bb, narrow(xs.grad(), 2, r * k, k),
                            narrow(ws.grad(), 0, r * k, k), bs.grad(), dw_summed, t, bwd);
  }
  if (world.rank() == 0) std::printf("  backward, measured by the ledger (per rank):\n");
  lesson::print_traffic_per_rank(world, bwd);
  return agree(world, why,
               str_cat("t = ", t, ": backward, dx and dw of this rank's shard, the whole db"));
}

}  // namespace

int main(int argc, char** argv) {
  return run_distributed(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    MS_CHECK(world.size() == 4, "lesson 08 runs on 4 ranks (mpirun -np 4), got ", world.size());
    if (world.rank() == 0)
      std::printf(
          "checking the row-parallel linear, Conv1D W [in, out] = [%lld, %lld], x (B, T, "
          "in) = (%lld, %lld, %lld), against the serial layer\n",
          (long long)IN, (long long)OUT, (long long)B, (long long)T, (long long)IN);
    for (int t : {2, 4})
      if (!check_t(world, t)) return lesson::finish(world, false);
    lesson08::tp_vs_dp(world);
    return lesson::finish(world, true);
  });
}
