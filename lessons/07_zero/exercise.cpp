// Lesson 07 exercise: write the ZeRO stage-1 shard update, then run
// `make lesson L=07 TRY=1` (4 ranks).
//
// Tools (autograd/ops.h, parallel/comm/communicator.h):
//   comm.rank(), comm.size()
//   ms::narrow(flat, 0, start, len)   a view of elements [start, start+len): writes go to flat
//   ms::Tensor::empty({n}), ms::clone(t)
//   comm.reduce_scatter(in, out, ms::ReduceOp::Avg)   in: D blocks of out.numel(); rank r gets block r
//   comm.all_gather(in, out)                          out: D blocks of in.numel(); block r = rank r's in
//     (in and out must not overlap in memory: MPI_IN_PLACE is not offered)
//   ms::mul_(t, s)   t *= s;     ms::add_(dst, src, alpha)   dst += alpha * src
#include "lessons/07_zero/lesson.h"

void zero1_step(ms::Communicator& comm, ms::Tensor& flat_params, const ms::Tensor& flat_grads,
                ms::Tensor& momentum, double lr, double mu) {
  // TODO 1: reduce-scatter the gradients: this rank's averaged slice.
  // TODO 2: momentum and SGD update of this rank's slice of flat_params only.
  // TODO 3: all-gather the slices so every rank has all updated parameters.
  (void)comm, (void)flat_params, (void)flat_grads, (void)momentum, (void)lr, (void)mu;
}
