// expect: nothing overlapped
// expect: a wait right after the start
// Lesson 14, deliberately wrong: nonblocking in name only — each MPI_Iallreduce is waited for
// the moment it starts, which is a blocking all-reduce by another name.
#include <vector>

#include "lessons/14_nccl_overlap/lesson.h"

void overlapped_backward(MPI_Comm comm, const Backward& bw) {
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  for (int l = bw.layers - 1; l >= 0; --l) {
    bw.run_layer(l, [] {});
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, bw.bucket(l), bw.bucket_size(l), MPI_FLOAT, MPI_SUM, comm, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);  // BUG: waits before the next layer computes
  }
  for (int l = 0; l < bw.layers; ++l) {
    float* g = bw.bucket(l);
    for (int i = 0; i < bw.bucket_size(l); ++i) g[i] /= float(ranks);
  }
}
