// Lesson 05 exercise: write ring all-reduce, then run `make lesson L=05 TRY=1`.
//
// Tools (parallel/comm/communicator.h, autograd/ops.h):
//   comm.rank(), comm.size()
//   ms::Work w = comm.isend(tensor, dst);  ms::Work w = comm.irecv(tensor, src);  w.wait();
//     (blocking comm.send / comm.recv exist too — think about what happens when all four
//      ranks call send() at the same time with a big message)
//   ms::narrow(t, 0, start, length)  a view of elements [start, start+length) of a 1-D t:
//                                    writing into it writes into t (no copy)
//   ms::view(t, {-1})                t as 1-D (a view)
//   ms::Tensor::empty({n})           scratch space for an incoming block
//   ms::add_(dst, src)               dst += src, elementwise
//
// Plan (README.md, "ring all-reduce"): cut t (any shape, maybe empty: lesson.h) into D
// blocks whose sizes differ by at most one; D-1 reduce-scatter steps (send one block to rank+1, receive one from rank-1, add it
// into your copy of that block); then D-1 all-gather steps (pass the finished blocks on,
// receiving straight into place).
#include "lessons/05_collectives/lesson.h"

void my_ring_all_reduce(ms::Communicator& comm, ms::Tensor& t) {
  // TODO: implement ring all-reduce (reduce-scatter, then all-gather) with isend/irecv.
  (void)comm, (void)t;
}
