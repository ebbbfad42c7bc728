// The tensor-parallel mappings (parallel/tp/mappings.h): each op's forward
// and backward against the serial computation, at tp = 2 and 4 (and tp = 2 on
// two groups at once with 4 ranks), with B = 2 so the sequence-dim ops see a
// strided shard; the ledger counts of each op; the sequence-parallel pair
// moving the same bytes as the all-reduce it replaces.
#include "parallel/tp/mappings.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 8, C = 12;
constexpr double kTol = 1e-5;  // sums over ranks may add in another order

// Rank k's tensor for seed base s (every rank can build every rank's).
Tensor of_rank(const Shape& shape, uint64_t s, int k) {
  return seeded(shape, s + 1000 * k);
}
Tensor sum_over_ranks(const Shape& shape, uint64_t s, int t) {
  Tensor acc = zeros(shape);
  for (int k = 0; k < t; ++k) acc = acc + of_rank(shape, s, k);
  return acc;
}
Tensor cat_over_ranks(const Shape& shape, uint64_t s, int t, int64_t dim) {
  std::vector<Tensor> parts;
  for (int k = 0; k < t; ++k) parts.push_back(of_rank(shape, s, k));
  return cat(parts, dim);
}

struct Result {
  Tensor y, dx;
  Traffic fwd, bwd;
};

// Runs op on leaf x, then backward with upstream gradient g.
template <typename Op>
Result run(Op op, const Tensor& x_value, const Tensor& g, Communicator& tp) {
  Tensor x = leaf(x_value);
  Traffic t0 = tp.traffic();
  Tensor y = op(x, tp);
  Traffic t1 = tp.traffic();
  sum(y * g).backward();
  return {detach(y), x.grad(), t1 - t0, tp.traffic() - t1};
}

}  // namespace

TEST_CASE("tp mappings: forward and backward against the serial sums and slices",
          "[mpi][tp][tp_mappings]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    const int r = tp.rank();
    INFO("tp " << t << ", tp rank " << r << ", world rank " << world.rank());
    const Shape full{B, T, C}, col{B, T, C / t}, seq{B, T / t, C};
    const int64_t bytes_full = B * T * C * 4;

    // f: identity forward, all-reduce backward.
    Result f = run(copy_to_tp_region, of_rank(full, 1, r), of_rank(full, 2, r), tp);
    CHECK(max_diff(f.y, of_rank(full, 1, r)) == 0);
    CHECK(max_diff(f.dx, sum_over_ranks(full, 2, t)) < kTol);
    CHECK(f.fwd.total().calls == 0);
    CHECK(f.bwd[CommOp::AllReduce].calls == 1);
    CHECK(f.bwd[CommOp::AllReduce].payload == bytes_full);

    // g: all-reduce forward, identity backward.
    Result g = run(reduce_from_tp_region, of_rank(full, 3, r), of_rank(full, 4, r), tp);
    CHECK(max_diff(g.y, sum_over_ranks(full, 3, t)) < kTol);
    CHECK(max_diff(g.dx, of_rank(full, 4, r)) == 0);
    CHECK(g.fwd[CommOp::AllReduce].calls == 1);
    CHECK(g.fwd[CommOp::AllReduce].payload == bytes_full);
    CHECK(g.bwd.total().calls == 0);

    // Split the last dim: keep my chunk; backward all-gathers the chunks.
    Result sc = run(scatter_to_tp_region, seeded(full, 5), of_rank(col, 6, r), tp);
    CHECK(max_diff(sc.y, narrow(seeded(full, 5), 2, r * (C / t), C / t)) == 0);
    CHECK(max_diff(sc.dx, cat_over_ranks(col, 6, t, 2)) == 0);
    CHECK(sc.fwd.total().calls == 0);
    CHECK(sc.bwd[CommOp::AllGather].calls == 1);

    // Gather the last dim; backward keeps my chunk of the (replicated) gradient.
    Result ga = run(gather_from_tp_region, of_rank(col, 7, r), seeded(full, 8), tp);
    CHECK(max_diff(ga.y, cat_over_ranks(col, 7, t, 2)) == 0);
    CHECK(max_diff(ga.dx, narrow(seeded(full, 8), 2, r * (C / t), C / t)) == 0);
    CHECK(ga.fwd[CommOp::AllGather].calls == 1);
    CHECK(ga.fwd[CommOp::AllGather].payload == bytes_full);
    CHECK(ga.bwd.total().calls == 0);

    // Split T: positions [r·T/t, (r+1)·T/t) of both sequences.
    Result ss = run(scatter_to_sequence_parallel_region, seeded(full, 9), of_rank(seq, 10, r), tp);
    CHECK(max_diff(ss.y, narrow(seeded(full, 9), 1, r * (T / t), T / t)) == 0);
    CHECK(max_diff(ss.dx, cat_over_ranks(seq, 10, t, 1)) == 0);
    CHECK(ss.fwd.total().calls == 0);
    CHECK(ss.bwd[CommOp::AllGather].calls == 1);

    // All-gather T; backward reduce-scatters the ranks' partial gradients.
    Result gs =
        run(gather_from_sequence_parallel_region, of_rank(seq, 11, r), of_rank(full, 12, r), tp);
    CHECK(max_diff(gs.y, cat_over_ranks(seq, 11, t, 1)) == 0);
    CHECK(max_diff(gs.dx, narrow(sum_over_ranks(full, 12, t), 1, r * (T / t), T / t)) < kTol);
    CHECK(gs.fwd[CommOp::AllGather].calls == 1);
    CHECK(gs.fwd[CommOp::AllGather].payload == bytes_full);
    CHECK(gs.bwd[CommOp::ReduceScatter].calls == 1);
    CHECK(gs.bwd[CommOp::ReduceScatter].payload == bytes_full);
    CHECK(gs.bwd.total().calls == 1);

    // Reduce-scatter T; backward all-gathers.
    Result rs = run(reduce_scatter_to_sequence_parallel_region, of_rank(full, 13, r),
                    of_rank(seq, 14, r), tp);
    CHECK(max_diff(rs.y, narrow(sum_over_ranks(full, 13, t), 1, r * (T / t), T / t)) < kTol);
    CHECK(max_diff(rs.dx, cat_over_ranks(seq, 14, t, 1)) == 0);
    CHECK(rs.fwd[CommOp::ReduceScatter].calls == 1);
    CHECK(rs.bwd[CommOp::AllGather].calls == 1);
    CHECK(rs.fwd.total().calls == 1);

    // Korthikanti §4.2.2: the all-gather + reduce-scatter pair of sequence
    // parallelism sends what the all-reduce it replaces sends.
    CHECK((gs.fwd + rs.fwd).total().sent == g.fwd.total().sent);
    CHECK((gs.bwd + rs.bwd).total().sent == f.bwd.total().sent);
  }
}

TEST_CASE("tp mappings: a dim that does not split over tp is an error naming the op and shape",
          "[mpi][tp][tp_mappings]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    // T = 3 splits over neither 2 nor 4; every rank fails before any collective.
    std::string e1 = error_of([&] { scatter_to_sequence_parallel_region(ones({2, 3, 4}), tp); });
    std::string e2 = error_of([&] {
      reduce_scatter_to_sequence_parallel_region(ones({2, 3, 4}), tp);
    });
    std::string e3 = error_of([&] { scatter_to_tp_region(ones({2, 4, 3}), tp); });
    INFO(e1 << "\n" << e2 << "\n" << e3);
    CHECK(has(e1, "scatter_to_sequence_parallel_region"));
    CHECK(has(e1, "[2, 3, 4]"));
    CHECK(has(e1, str_cat("tp ", t)));
    CHECK(has(e2, "reduce_scatter_to_sequence_parallel_region"));
    CHECK(has(e3, "scatter_to_tp_region"));
  }
}
