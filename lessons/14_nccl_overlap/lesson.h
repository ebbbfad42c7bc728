// Lesson 14: overlapping gradient communication with backward. You write the
// overlapped bucket all-reduce in exercise.cpp with MPI's nonblocking
// collectives; check.cpp (2 ranks) checks the averaged gradients against the
// blocking version, watches your MPI calls (through MPI's profiling interface)
// with a timestamp on each call to see which all-reduces were in flight while
// later layers computed (and prints that timeline), and measures the wall time
// of serial and overlapped backward. CPU only: on a GPU
// the same structure is NCCL on a communication stream (README).
#pragma once
#include <mpi.h>

#include <functional>

// The checker's backward pass: `layers` layers, each owning one bucket of
// gradients (DDP's bucket, DeepSpeed's reduce_bucket_size).
struct Backward {
  int layers = 0;
  // Runs layer l's backward, which fills bucket(l) with this rank's gradient.
  // It computes for 4 ms, calling poll() again and again meanwhile: your
  // chance to call into MPI while compute runs.
  std::function<void(int l, const std::function<void()>& poll)> run_layer;
  std::function<float*(int l)> bucket;    // bucket(l): bucket_size(l) floats
  std::function<int(int l)> bucket_size;
};

// Runs bw.run_layer for l = layers-1 down to 0 (backward's order) and leaves
// every bucket holding the AVERAGE of that bucket over the ranks of comm.
// Overlap: the moment layer l's backward returns, START bucket l's all-reduce
// (MPI_Iallreduce, MPI_IN_PLACE, MPI_FLOAT, MPI_SUM) and go on to layer l-1
// without waiting. Open MPI moves a nonblocking collective along only inside
// MPI calls, so the poll you pass to run_layer must call into MPI (MPI_Testall
// on the requests in flight). After layer 0: wait for every request, then
// divide each bucket by the number of ranks. Every request must be complete
// when you return.
void overlapped_backward(MPI_Comm comm, const Backward& bw);
