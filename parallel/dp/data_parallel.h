// Data parallelism, the way PyTorch's DistributedDataParallel does it
// (Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel
// Training", VLDB 2020).
//
// What is distributed training, in one sentence: D processes each hold a full
// copy of the model, each computes gradients on its own 1/D of the global
// batch, and before every optimizer step they average those gradients with an
// all-reduce, so every copy takes the same step and the copies never diverge.
// Because the loss is a mean over the batch, the average of D per-rank
// gradients over B samples each IS the gradient over all D·B samples: D ranks
// with batch B train exactly like one process with batch D·B.
//
// The three engineering ideas of the DDP paper, all here:
//  1. Broadcast the parameters from rank 0 at start, so all replicas begin equal
//     (afterwards identical averaged gradients keep them equal).
//  2. Gradient bucketing: one all-reduce per parameter pays the latency α per
//     call hundreds of times; one all-reduce of everything must wait for the whole
//     backward. So parameters are grouped into buckets of ~bucket_bytes (25 MB by
//     default), in REVERSE registration order — roughly the order backward
//     produces their gradients — and each bucket is one flat buffer.
//  3. Overlap: a hook on every parameter fires when its gradient is final; when a
//     bucket's last gradient arrives, its all-reduce starts (nonblocking) while
//     backward keeps computing the gradients of earlier layers. Only the last
//     bucket's communication is left when backward ends. Buckets are launched in
//     bucket order on every rank, because collectives must match up across ranks.
//     That state machine is grad_buckets.h, shared with ZeRO-2; DDP's part is
//     "the bucket's communication is an all-reduce, in place".
// Plus gradient accumulation: with sync off (PyTorch's no_sync()), gradients
// just accumulate locally; the all-reduce happens once, on the last micro-step.
//
// The parameters' .grad become views into the bucket buffers ("gradient as
// bucket view" in PyTorch), so gradients take 4Ψ bytes, not 4Ψ plus a copy.
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/dp/grad_buckets.h"
#include "tensor/placement.h"
#include "tensor/tensor.h"

namespace ms {

// Groups parameters into buckets of about `cap_bytes`: walking the parameters
// in reverse order, a bucket closes once it holds cap_bytes or more (so a
// parameter larger than the cap gets a bucket to itself). Returns parameter
// indices per bucket; bucket 0 holds the LAST parameters.
std::vector<std::vector<int>> bucket_by_size(const std::vector<Tensor>& params, size_t cap_bytes);

class DataParallel {
 public:
  // Collective: broadcasts every parameter from rank 0 of `dp`, then builds the
  // buckets and hangs a gradient hook on every parameter.
  // grad_dtype: the gradient buffers' dtype, which is what the all-reduce
  // moves (mixed precision: f32 or 16-bit); unset = the parameters' dtype.
  DataParallel(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes = 25u << 20,
               std::optional<DType> grad_dtype = std::nullopt);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Which mesh axis `dp` is, for the gradients' placements (grad_placement.h):
  // DP by default; ExpertDP when this instance averages experts' gradients.
  void set_axis(MeshAxis axis) { axis_ = axis; }
  // false: the next backward only accumulates gradients (no communication).
  void set_gradient_sync(bool sync) { sync_ = sync; }
  // After the last backward: launches any bucket not launched yet (a parameter
  // that got no gradient counts as zero) and waits for all. Afterwards every
  // parameter's .grad is the average over the dp ranks.
  void finish_gradient_sync();
  // Zeroes every gradient (the bucket buffers) for the next step.
  void zero_grad();

  const std::vector<Tensor>& params() const { return params_; }
  // Parameter indices per bucket, in launch order.
  std::vector<std::vector<int>> buckets() const;
  // The flat gradient buffers (for memory accounting).
  std::vector<Tensor> grad_buffers() const;
  // How many buckets started their all-reduce while backward was still running
  // during the last synchronising backward (the overlap DDP is built for).
  int buckets_launched_during_backward() const { return buckets_.launched_during_backward(); }

 private:
  void on_grad_ready(int i);
  // A bucket's collective and what it says about the gradients in it: each
  // must still be partial over the axis before, and is replicated after.
  Work launch(int k);
  void complete(int k);

  std::vector<Tensor> params_;
  Communicator dp_;
  bool sync_ = true;
  MeshAxis axis_ = MeshAxis::DP;
  std::vector<bool> skipped_;    // per bucket: its collective was skipped (a planted bug)
  std::vector<Tensor> buffers_;  // per bucket: flat f32, its gradients back to back
  std::vector<Tensor>
      grad_slot_;        // per parameter: its place in its bucket's buffer, shaped like it
  GradBuckets buckets_;  // when each bucket's all-reduce starts and ends
  std::shared_ptr<DataParallel*> self_;  // the hooks reach us through this; nulled on destruction
};

}  // namespace ms
