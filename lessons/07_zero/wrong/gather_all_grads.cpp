// expect: FAIL: your step moves no more than stage 1's 2Ψ per rank, what DDP's all-reduce moves
// expect: your zero1_step sent 458,580 B per step on this rank; a stage-1 step needs 183,432 B
// expect: all_gather* x2: sent 458,580 B, received 458,580 B
// expect: 2.50x. The table above shows which op moved it.
// expect: Reduce-scatter the gradients (Ψ), all-gather the updated slices (Ψ), nothing more.
// All-gather everyone's FULL gradient and average my slice locally: right
// parameters, D times the reduce-scatter's bytes.
#include "lessons/07_zero/lesson.h"

void zero1_step(ms::Communicator& comm, ms::Tensor& flat_params, const ms::Tensor& flat_grads,
                ms::Tensor& momentum, double lr, double mu) {
  const int64_t S = flat_params.numel() / comm.size();
  // 1. Rank r receives the average of slice r of everyone's gradient: Ψ/D
  //    numbers, instead of the Ψ an all-reduce would hand every rank.
  const int D = comm.size();
  ms::Tensor every = ms::Tensor::empty({D * flat_params.numel()});
  comm.all_gather(flat_grads, every);
  ms::Tensor g = ms::zeros({S});
  for (int k = 0; k < D; ++k)
    ms::add_(g, ms::narrow(every, 0, k * flat_params.numel() + comm.rank() * S, S), 1.0 / D);
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
