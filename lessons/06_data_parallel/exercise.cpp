// Lesson 06 exercise: write DDP's gradient bucketing and averaging, then run
// `make lesson L=06 TRY=1` (4 ranks).
//
// Tools (autograd/ops.h, parallel/comm/communicator.h):
//   t.nbytes(), t.numel(), p.grad()            sizes; a parameter's gradient tensor
//   ms::zeros({n}), ms::Tensor::empty({n})      a new flat f32 buffer
//   ms::narrow(flat, 0, start, len)             elements [start, start+len) of a 1-D tensor (a view)
//   ms::reshape(t, {-1})                        t as 1-D (a view when t is contiguous)
//   ms::copy_(dst, src)                         dst = src (shapes must match)
//   ms::mul_(t, s)                              t *= s
//   comm.iall_reduce(t, ms::ReduceOp::Sum / Avg) -> ms::Work;  work.wait()
//   comm.size()
#include "lessons/06_data_parallel/lesson.h"

std::vector<std::vector<int>> make_buckets(const std::vector<ms::Tensor>& params,
                                           size_t cap_bytes) {
  // TODO: walk i = params.size()-1 down to 0; start a new bucket when there is none yet or
  // the current one holds >= cap_bytes; append i.
  (void)params, (void)cap_bytes;
  return {};
}

InFlightBucket launch_bucket(ms::Communicator& comm, const std::vector<ms::Tensor>& params,
                             const std::vector<int>& bucket) {
  // TODO: pack the bucket's gradients into one flat buffer, start ONE nonblocking all-reduce.
  (void)comm, (void)params, (void)bucket;
  return {};
}

void finish_bucket(ms::Communicator& comm, InFlightBucket& in_flight,
                   const std::vector<ms::Tensor>& params, const std::vector<int>& bucket) {
  // TODO: wait, then copy the averaged values back into each parameter's .grad.
  (void)comm, (void)in_flight, (void)params, (void)bucket;
}
