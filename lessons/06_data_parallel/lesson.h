// Lesson 06: data parallelism. You write the two halves of DDP's gradient
// path in exercise.cpp — bucketing, and averaging a bucket with one
// nonblocking all-reduce — and check.cpp plugs them into backward on 4 ranks
// (a gradient hook per parameter, as PyTorch DDP and parallel/dp/data_parallel.cpp do).
#pragma once
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/communicator.h"

// Groups parameters into buckets of about `cap_bytes`, PyTorch DDP's way: walk
// the parameters from the LAST to the first (backward produces gradients
// roughly in that order) and close the current bucket once it holds cap_bytes
// or more — so a parameter bigger than the cap still gets a bucket. Returns
// the parameter indices of each bucket, bucket 0 first. `params` may hold
// tensors of any shape; every one is f32 (its byte size is numel·4).
std::vector<std::vector<int>> make_buckets(const std::vector<ms::Tensor>& params, size_t cap_bytes);

// One bucket whose all-reduce is in flight.
struct InFlightBucket {
  ms::Tensor flat;  // the bucket's gradients back to back (f32, 1-D)
  ms::Work work;    // the nonblocking all-reduce of `flat`
};

// Called from backward the moment the bucket's last gradient is ready: copy
// the gradients params[i].grad() of every i in `bucket` into ONE flat buffer
// and START one nonblocking all-reduce of it (comm.iall_reduce). Do not wait:
// backward keeps computing earlier layers while the bytes travel. Every
// params[i] in `bucket` has a defined f32 .grad() of its own shape; the grads
// are separate tensors, not views of one buffer, so the copy is yours to make.
InFlightBucket launch_bucket(ms::Communicator& comm, const std::vector<ms::Tensor>& params,
                             const std::vector<int>& bucket);

// After backward: wait for the all-reduce and write the AVERAGE over the
// comm.size() ranks back into every params[i].grad() of the bucket.
void finish_bucket(ms::Communicator& comm, InFlightBucket& in_flight,
                   const std::vector<ms::Tensor>& params, const std::vector<int>& bucket);
