// expect: FAIL: your step moves no more than stage 1's 2Ψ per rank, what DDP's all-reduce moves
// expect: your zero1_step sent 275,148 B per step on this rank; a stage-1 step needs 183,432 B
// expect: You ALL-REDUCED the gradients, then updated your slice
// expect: 3Ψ instead of 2Ψ
// The README's common wrong answer: all-reduce the whole gradient, then update
// only my slice. The parameters come out right; the traffic is 3Ψ, not 2Ψ.
#include "lessons/07_zero/lesson.h"

void zero1_step(ms::Communicator& comm, ms::Tensor& flat_params, const ms::Tensor& flat_grads,
                ms::Tensor& momentum, double lr, double mu) {
  const int64_t S = flat_params.numel() / comm.size();
  // 1. Rank r receives the average of slice r of everyone's gradient: Ψ/D
  //    numbers, instead of the Ψ an all-reduce would hand every rank.
  ms::Tensor all = ms::clone(flat_grads);
  comm.all_reduce(all, ms::ReduceOp::Avg);  // every rank gets ALL the averaged gradients
  ms::Tensor g = ms::narrow(all, 0, comm.rank() * S, S);
  // 2. The optimizer step on my slice, with the state only my slice needs.
  ms::Tensor mine = ms::narrow(flat_params, 0, comm.rank() * S, S);
  ms::mul_(momentum, mu);
  ms::add_(momentum, g);          // buf = mu·buf + g
  ms::add_(mine, momentum, -lr);  // p -= lr·buf
  // 3. Everyone gets everyone's slice. My slice lives inside flat_params, the
  //    output, so it travels from a copy.
  ms::Tensor send = ms::clone(mine);
  comm.all_gather(send, flat_params);
}
