// expect: nothing overlapped
// expect: a blocking MPI_Allreduce
// Lesson 14, deliberately wrong: right gradients, but each bucket's all-reduce is blocking, so
// every layer waits for the previous bucket's communication: serial, nothing hidden.
#include "lessons/14_nccl_overlap/lesson.h"

void overlapped_backward(MPI_Comm comm, const Backward& bw) {
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  for (int l = bw.layers - 1; l >= 0; --l) {
    bw.run_layer(l, [] {});
    MPI_Allreduce(MPI_IN_PLACE, bw.bucket(l), bw.bucket_size(l), MPI_FLOAT, MPI_SUM, comm);  // BUG
    float* g = bw.bucket(l);
    for (int i = 0; i < bw.bucket_size(l); ++i) g[i] /= float(ranks);
  }
}
