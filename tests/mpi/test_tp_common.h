// Shared by the tensor-parallel tests (tests/mpi/test_tp_*.cpp): the tp groups
// to run on, seeded data every rank can rebuild, and comparisons.
//
// Every rank builds the SAME serial tensors from a fixed seed, so the serial
// reference needs no communication; the tp op runs on shards, and each rank
// compares its output / its shard's gradient with the serial one. Only CHECK
// (never REQUIRE) after collectives, so a failing rank never leaves the
// others waiting in a collective.
#pragma once
#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/communicator.h"

namespace ms::test {

// tp sizes this job can run: 2 and 4 where they divide the world. With 4
// ranks, tp = 2 runs on two groups {0,1} and {2,3} at once (Megatron order:
// tp fastest), split from the world.
inline std::vector<int> tp_sizes(const Communicator& world) {
  std::vector<int> out;
  for (int t : {2, 4})
    if (world.size() % t == 0) out.push_back(t);
  return out;
}

inline Communicator tp_group(const Communicator& world, int t) {
  return world.split(world.rank() / t, world.rank() % t);
}

inline Tensor seeded(const Shape& shape, uint64_t seed, double std = 1.0) {
  Generator gen(seed);
  return randn(shape, gen, 0, std);
}

// A (B, T) batch of byte-vocabulary token ids, the same on every rank.
inline Tensor seeded_tokens(int64_t B, int64_t T, uint64_t seed) {
  Generator gen(seed);
  std::vector<int32_t> v(B * T);
  for (auto& x : v) x = int32_t(gen.next_u64() % 256);
  return from_vector(v, {B, T});
}

inline Tensor leaf(const Tensor& t) {
  Tensor c = clone(detach(t));
  c.set_requires_grad(true);
  return c;
}

// max |a - b|, or infinity when the shapes differ.
inline double max_diff(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape()) return INFINITY;
  Tensor d = contiguous(to(detach(a), DType::F64) - to(detach(b), DType::F64));
  double m = 0;
  for (int64_t i = 0; i < d.numel(); ++i) m = std::fmax(m, std::fabs(d.host_data<double>()[i]));
  return m;
}

}  // namespace ms::test
