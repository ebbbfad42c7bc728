// Lesson 05: collectives and their cost. You write ring all-reduce in
// exercise.cpp with point-to-point messages only; check.cpp runs it on 4 ranks
// and compares it with MPI's all-reduce.
#pragma once
#include "autograd/ops.h"
#include "parallel/comm/communicator.h"

// In place: afterwards every rank's `t` holds the elementwise SUM of all ranks'
// `t`. `t` is f32 and contiguous, of ANY numel (not necessarily a multiple of
// comm.size(), maybe even smaller than it). Use only comm.send/recv or
// comm.isend/irecv (+ Work::wait) — no collectives.
void my_ring_all_reduce(ms::Communicator& comm, ms::Tensor& t);
