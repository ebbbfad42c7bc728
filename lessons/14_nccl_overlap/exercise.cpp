// Lesson 14 exercise: overlap each bucket's all-reduce with the layers still
// to compute, then run `make lesson L=14 TRY=1`.
//
// Tools (MPI, C API):
//   MPI_Iallreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, comm, &request)
//                                 starts an all-reduce and returns at once
//   MPI_Testall(n, requests, &flag, MPI_STATUSES_IGNORE)
//                                 never blocks; moves MPI along; flag = all done
//   MPI_Waitall(n, requests, MPI_STATUSES_IGNORE)   blocks until all are done
//   MPI_REQUEST_NULL               a finished (or never started) request
//   MPI_Comm_size(comm, &ranks)
#include <vector>

#include "lessons/14_nccl_overlap/lesson.h"
#include "tensor/error.h"

void overlapped_backward(MPI_Comm comm, const Backward& bw) {
  // TODO 1: one MPI_Request per bucket (start them all as MPI_REQUEST_NULL), and a
  //         poll lambda that calls MPI_Testall on them.
  // TODO 2: for l = layers-1 down to 0: bw.run_layer(l, poll), then START bucket l's
  //         all-reduce with MPI_Iallreduce. Do not wait here.
  // TODO 3: wait for all of them, then divide every bucket by the number of ranks.
  (void)comm, (void)bw;  // delete this line once you use them
  throw ms::Error("TODO: write overlapped_backward in lessons/14_nccl_overlap/exercise.cpp");
}
