// expect: It is still this rank's LOCAL gradient: nothing was averaged
// expect: FAIL: 7 buckets, each packed and averaged with one all-reduce
// Waits for the all-reduce but never copies the averages back into .grad.
#include "lessons/06_data_parallel/lesson.h"

std::vector<std::vector<int>> make_buckets(const std::vector<ms::Tensor>& params,
                                           size_t cap_bytes) {
  std::vector<std::vector<int>> buckets;
  size_t bytes = 0;
  for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {  // backward order
    if (buckets.empty() || bytes >= cap_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += params[i].nbytes();
  }
  return buckets;
}

InFlightBucket launch_bucket(ms::Communicator& comm, const std::vector<ms::Tensor>& params,
                             const std::vector<int>& bucket) {
  int64_t n = 0;
  for (int i : bucket) n += params[i].numel();
  InFlightBucket b{ms::Tensor::empty({n}), ms::Work()};
  int64_t offset = 0;
  for (int i : bucket) {  // pack: one message instead of one per parameter (latency α once)
    ms::Tensor dst = ms::narrow(b.flat, 0, offset, params[i].numel());
    ms::copy_(dst, ms::reshape(params[i].grad(), {-1}));
    offset += params[i].numel();
  }
  // Average, not sum: each rank's loss is a mean over ITS batch, so the mean of
  // the gradients is the gradient of the mean loss over all ranks' samples.
  b.work = comm.iall_reduce(b.flat, ms::ReduceOp::Avg);  // returns at once
  return b;
}

void finish_bucket(ms::Communicator&, InFlightBucket& in_flight,
                   const std::vector<ms::Tensor>& params, const std::vector<int>& bucket) {
  in_flight.work.wait();
  int64_t offset = 0;
  (void)params, (void)bucket, (void)offset;
}
