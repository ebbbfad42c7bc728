// expect: is right but the other slices never changed: all-gather the slices after the update.
// expect: FAIL: 3 ZeRO-1 steps on 4 ranks = 3 SGD-momentum steps of one process
// Updates my slice and stops: the other ranks' updated slices never arrive.
#include "lessons/07_zero/lesson.h"

void zero1_step(ms::Communicator& comm, ms::Tensor& flat_params, const ms::Tensor& flat_grads,
                ms::Tensor& momentum, double lr, double mu) {
  const int64_t S = flat_params.numel() / comm.size();
  // 1. Rank r receives the average of slice r of everyone's gradient: Ψ/D
  //    numbers, instead of the Ψ an all-reduce would hand every rank.
  ms::Tensor g = ms::Tensor::empty({S});
  comm.reduce_scatter(flat_grads, g, ms::ReduceOp::Avg);
  // 2. The optimizer step on my slice, with the state only my slice needs.
  ms::Tensor mine = ms::narrow(flat_params, 0, comm.rank() * S, S);
  ms::mul_(momentum, mu);
  ms::add_(momentum, g);          // buf = mu·buf + g
  ms::add_(mine, momentum, -lr);  // p -= lr·buf
  // 3. Everyone gets everyone's slice. My slice lives inside flat_params, the
  //    output, so it travels from a copy.
}
