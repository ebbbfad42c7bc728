// Lesson 14 reference solution: DDP's overlap (Li et al., VLDB 2020, §3.2) in
// raw MPI. Each bucket's all-reduce starts as soon as its layer's backward has
// produced it and travels while earlier layers compute.
#include <vector>

#include "lessons/14_nccl_overlap/lesson.h"

void overlapped_backward(MPI_Comm comm, const Backward& bw) {
  std::vector<MPI_Request> in_flight(size_t(bw.layers), MPI_REQUEST_NULL);
  // Progress: Open MPI advances a nonblocking collective only when some MPI
  // call runs on this rank. MPI_Testsome is that call, costs nothing when
  // nothing is ready, and retires each request as it completes (MPI_Testall
  // would do as well, but reports only once all of them are done).
  // (NCCL needs no such poking: its kernels run on the GPU.)
  std::vector<int> done_index(size_t(bw.layers));
  auto poll = [&in_flight, &done_index] {
    int done = 0;
    MPI_Testsome(int(in_flight.size()), in_flight.data(), &done, done_index.data(),
                 MPI_STATUSES_IGNORE);
  };
  for (int l = bw.layers - 1; l >= 0; --l) {
    bw.run_layer(l, poll);  // bucket l is final only after this returns
    MPI_Iallreduce(MPI_IN_PLACE, bw.bucket(l), bw.bucket_size(l), MPI_FLOAT, MPI_SUM, comm,
                   &in_flight[size_t(l)]);
  }
  MPI_Waitall(int(in_flight.size()), in_flight.data(), MPI_STATUSES_IGNORE);
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  for (int l = 0; l < bw.layers; ++l) {
    float* g = bw.bucket(l);
    for (int i = 0; i < bw.bucket_size(l); ++i) g[i] /= float(ranks);
  }
}
