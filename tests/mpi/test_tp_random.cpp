// Dropout streams under tp (parallel/tp/random.h): which masks agree across
// tp ranks and which differ, and sequence-parallel dropout equal to the
// serial dropout's slice (values, gradient and the generator's next draw).
#include "parallel/tp/random.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

// Every tp rank's tensor, in rank order (t blocks).
Tensor gathered(const Tensor& x, Communicator& tp) {
  Tensor xc = contiguous(x);
  Shape s{tp.size()};
  s.insert(s.end(), x.shape().begin(), x.shape().end());
  Tensor out = Tensor::empty(s, x.dtype());
  tp.all_gather(xc, out);
  return out;
}

}  // namespace

TEST_CASE("tp random: shared masks agree across tp ranks, per-rank masks differ",
          "[mpi][tp][tp_random]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    TpGenerators gens = tp_generators(1234, tp.rank());
    Tensor shared_mask = dropout(ones({4, 64}), 0.5, gens.shared);
    Tensor own_mask = dropout(ones({4, 64}), 0.5, gens.per_rank);
    Tensor all_shared = gathered(shared_mask, tp), all_own = gathered(own_mask, tp);
    for (int k = 1; k < t; ++k) {
      CHECK(max_diff(select(all_shared, 0, k), select(all_shared, 0, 0)) == 0);
      CHECK(max_diff(select(all_own, 0, k), select(all_own, 0, 0)) > 0);
    }
  }
}

TEST_CASE("tp random: sequence-parallel dropout is the serial dropout's slice",
          "[mpi][tp][tp_random]") {
  Communicator world = Communicator::world();
  for (int t : tp_sizes(world)) {
    Communicator tp = tp_group(world, t);
    INFO("tp " << t << ", tp rank " << tp.rank());
    const int64_t B = 2, T = 8, C = 6, n = T / t;
    const Tensor X = seeded({B, T, C}, 5), G = seeded({B, T, C}, 6);
    Generator serial_gen(99), sp_gen(99);
    Tensor x = leaf(X);
    Tensor y = dropout(x, 0.3, serial_gen);
    sum(y * G).backward();
    Tensor xs = leaf(narrow(X, 1, tp.rank() * n, n));
    Tensor ys = sequence_parallel_dropout(xs, 0.3, sp_gen, tp);
    sum(ys * narrow(G, 1, tp.rank() * n, n)).backward();
    CHECK(max_diff(ys, narrow(y, 1, tp.rank() * n, n)) == 0);
    CHECK(max_diff(xs.grad(), narrow(x.grad(), 1, tp.rank() * n, n)) == 0);
    CHECK(serial_gen.next_u64() == sp_gen.next_u64());  // the stream stays in step
  }
}
