// Hand-written ring collectives over point-to-point send/recv: the algorithms
// lesson 05 teaches, and the reference we benchmark against MPI_Allreduce
// (bench/bench_collectives.cpp).
//
// Ring all-reduce (Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms
// for clusters of workstations", JPDC 2009; popularised for deep learning by
// Baidu's ring-allreduce, 2017; NCCL's default for large messages):
//   D ranks in a ring, the tensor cut into D blocks.
//   1. reduce-scatter, D-1 steps: send one block to the next rank, receive one
//      from the previous and add it in. Afterwards rank r holds block r
//      reduced over all ranks.
//   2. all-gather, D-1 steps: pass the finished blocks around the ring.
//   2(D-1) steps, each moving n/D elements per rank: 2(D-1)/D · n in total,
//   which is optimal — every rank must receive (D-1)/D of the data for the
//   reduce and again for the gather — and independent of D.
//
// Any numel works: blocks differ by at most one element (n = 7, D = 4 gives
// 2,2,2,1; n < D gives empty blocks). bf16/f16 are reduced in f32 (converted
// once, rounded back once), f32/f64/i32 natively.
#pragma once
#include <vector>

#include "parallel/comm/communicator.h"

namespace ms {

// How a ring step is cut into messages (see ring.cpp for the measured
// defaults). Every rank must pass the same values.
struct RingOptions {
  int64_t segment_bytes = int64_t(4) << 20;  // blocks larger than this are pipelined
  int window = 2;                            // segments received ahead while reducing
};

// In place: t becomes the reduction (Sum, Avg or Max) of every rank's t.
void ring_all_reduce(Communicator& comm, Tensor& t, ReduceOp op = ReduceOp::Sum,
                     const RingOptions& options = {});
// `in` holds comm.size() blocks of out.numel() elements; rank r gets block r
// reduced over all ranks (same contract as Communicator::reduce_scatter).
void ring_reduce_scatter(Communicator& comm, const Tensor& in, Tensor& out,
                         ReduceOp op = ReduceOp::Sum, const RingOptions& options = {});
// `out` holds comm.size() blocks of in.numel() elements; block r is rank r's in.
void ring_all_gather(Communicator& comm, const Tensor& in, Tensor& out,
                     const RingOptions& options = {});

// Pairwise-exchange all-to-all (Thakur, Rabenseifner & Gropp, "Optimization
// of collective communication operations in MPICH", IJHPCA 2005: the
// algorithm MPICH and Open MPI use for long messages): P-1 steps; at step s
// rank r sends its block for rank (r+s)%P and receives rank (r-s)%P's block
// for it, so every step is a perfect matching and no rank waits on a busy
// peer. The own block is copied locally. Same contracts as
// Communicator::all_to_all / all_to_all_v; counted (measured) under the
// ledger row pairwise_all_to_all: exactly all_to_all_bytes.
void pairwise_all_to_all(Communicator& comm, const Tensor& in, Tensor& out);
void pairwise_all_to_all_v(Communicator& comm, const Tensor& in,
                           const std::vector<int64_t>& in_counts, Tensor& out,
                           const std::vector<int64_t>& out_counts);

}  // namespace ms
