// expect: started late
// expect: Issue each bucket's MPI_Iallreduce the moment run_layer(l) returns
// Lesson 14, deliberately wrong: every bucket's all-reduce is started only after the last
// layer's backward — nonblocking calls, correct sums, and nothing left to overlap with.
#include <vector>

#include "lessons/14_nccl_overlap/lesson.h"

void overlapped_backward(MPI_Comm comm, const Backward& bw) {
  std::vector<MPI_Request> in_flight(size_t(bw.layers), MPI_REQUEST_NULL);
  // Progress: Open MPI advances a nonblocking collective only when some MPI
  // call runs on this rank. MPI_Testall is that call, and costs nothing when
  // nothing is ready. (NCCL needs no such poking: its kernels run on the GPU.)
  auto poll = [&in_flight] {
    int done = 0;
    MPI_Testall(int(in_flight.size()), in_flight.data(), &done, MPI_STATUSES_IGNORE);
  };
  for (int l = bw.layers - 1; l >= 0; --l) bw.run_layer(l, poll);
  for (int l = bw.layers - 1; l >= 0; --l)  // BUG: started after the whole backward
    MPI_Iallreduce(MPI_IN_PLACE, bw.bucket(l), bw.bucket_size(l), MPI_FLOAT, MPI_SUM, comm,
                   &in_flight[size_t(l)]);
  MPI_Waitall(int(in_flight.size()), in_flight.data(), MPI_STATUSES_IGNORE);
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  for (int l = 0; l < bw.layers; ++l) {
    float* g = bw.bucket(l);
    for (int i = 0; i < bw.bucket_size(l); ++i) g[i] /= float(ranks);
  }
}
