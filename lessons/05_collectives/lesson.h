// Lesson 05: collectives and their cost. You write ring all-reduce in
// exercise.cpp with point-to-point messages only; check.cpp runs it on 4 ranks
// and compares it with MPI's all-reduce.
#pragma once
#include "autograd/ops.h"
#include "parallel/comm/communicator.h"

// In place: afterwards every rank's `t` holds the elementwise SUM of all ranks'
// `t`. `t` is f32 and contiguous, of ANY shape that every rank shares:
//   * any numel: not necessarily a multiple of comm.size(), maybe smaller than
//     it, maybe 0 (nothing to add; return normally on every rank);
//   * any number of dimensions: (3, 5, 7) is summed element by element like its
//     105 elements in a row, so cut blocks from the flat view ms::view(t, {-1}),
//     not from dim 0.
// The checker tests n = 1, 3, 7, 1001, 262147, 2^20, shapes (3, 5, 7), (0) and
// (2, 0, 3). Use only comm.send/recv or comm.isend/irecv (+ Work::wait) — no
// collectives: the communicator's ledger counts every op you call.
void my_ring_all_reduce(ms::Communicator& comm, ms::Tensor& t);
