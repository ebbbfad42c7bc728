#include "parallel/dp/data_parallel.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"

namespace ms {

std::vector<std::vector<int>> bucket_by_size(const std::vector<Tensor>& params, size_t cap_bytes) {
  std::vector<std::vector<int>> buckets;
  size_t bytes = 0;
  for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
    if (buckets.empty() || bytes >= cap_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += params[i].nbytes();
  }
  return buckets;
}

DataParallel::DataParallel(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes)
    : params_(std::move(params)), dp_(std::move(dp)), self_(std::make_shared<DataParallel*>(this)) {
  MS_CHECK(bucket_bytes > 0, "DataParallel: bucket_bytes must be positive");
  // 1. Same starting point everywhere: rank 0's parameters.
  for (Tensor& p : params_) {
    MS_CHECK(p.dtype() == DType::F32 && p.is_contiguous() && p.requires_grad(),
             "DataParallel: parameters must be contiguous f32 leaves that require grad, got ",
             dtype_name(p.dtype()), " ", shape_str(p.shape()));
    Tensor data = detach(p);  // the same memory, outside autograd
    dp_.broadcast(data, 0);
  }
  // 2. Buckets in reverse order, each one flat buffer; a parameter's gradient
  //    slot is a view of its bucket, shaped like the parameter.
  bucket_of_.assign(params_.size(), -1);
  grad_view_.resize(params_.size());
  for (std::vector<int>& members : bucket_by_size(params_, bucket_bytes)) {
    Bucket b;
    int64_t numel = 0;
    for (int i : members) numel += params_[i].numel();
    b.buffer = zeros({numel});
    int64_t offset = 0;
    for (int i : members) {
      const Shape& shape = params_[i].shape();
      grad_view_[i] = Tensor::make_view(b.buffer, shape, contiguous_strides(shape), offset);
      bucket_of_[i] = static_cast<int>(buckets_.size());
      offset += params_[i].numel();
    }
    b.params = std::move(members);
    b.waiting = static_cast<int>(b.params.size());
    buckets_.push_back(std::move(b));
  }
  // 3. The hooks. They hold self_, not `this`, so a hook that outlives us is harmless.
  for (size_t i = 0; i < params_.size(); ++i) {
    std::shared_ptr<DataParallel*> self = self_;
    params_[i].register_grad_hook([self, i](Tensor&) {
      if (*self) (*self)->on_grad_ready(static_cast<int>(i));
    });
  }
}

DataParallel::~DataParallel() {
  *self_ = nullptr;
  for (Bucket& b : buckets_) b.work.wait();  // MPI may still be writing the buffers
}

// Runs inside backward, as soon as parameter i's gradient is final.
void DataParallel::on_grad_ready(int i) {
  Tensor& p = params_[i];
  Bucket& b = buckets_[bucket_of_[i]];
  // Move the gradient into its bucket slot, once: from then on the engine
  // accumulates straight into the slot, because p.grad IS the slot.
  if (!p.grad().same(grad_view_[i])) {
    copy_(grad_view_[i], p.grad());
    p.set_grad(grad_view_[i]);
  }
  if (!sync_) return;  // accumulating: communicate on the last micro-step only
  if (--b.waiting == 0) {
    b.ready = true;
    launch_ready_buckets();
  }
}

// Buckets start in bucket order on every rank (collectives must match across
// ranks): bucket k waits for bucket k-1 even if its own gradients came first.
void DataParallel::launch_ready_buckets() {
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].ready) {
    Bucket& b = buckets_[next_to_launch_++];
    // Average, not sum: each rank's loss is a mean over ITS batch, so the mean
    // of the D gradients is the gradient of the mean loss over all D·B samples.
    b.work = dp_.iall_reduce(b.buffer, ReduceOp::Avg);
    b.launched = true;
    ++launched_in_backward_;
  }
}

void DataParallel::finish_gradient_sync() {
  // Normally every bucket launched during backward. If a parameter got no
  // gradient, its bucket is launched now (in order, so ranks still match).
  const int during_backward = launched_in_backward_;
  for (Bucket& b : buckets_) b.ready = true;
  launch_ready_buckets();
  for (Bucket& b : buckets_) b.work.wait();
  // Every parameter's .grad is its averaged slot (also one that got no gradient).
  for (size_t i = 0; i < params_.size(); ++i) params_[i].set_grad(grad_view_[i]);
  for (Bucket& b : buckets_) {
    b.waiting = static_cast<int>(b.params.size());
    b.ready = b.launched = false;
    b.work = Work();
  }
  next_to_launch_ = 0;
  launched_in_backward_ = 0;
  last_launched_in_backward_ = during_backward;
}

void DataParallel::zero_grad() {
  NoGradGuard no_grad;
  for (Bucket& b : buckets_) fill_(b.buffer, 0);
}

std::vector<std::vector<int>> DataParallel::buckets() const {
  std::vector<std::vector<int>> out;
  for (const Bucket& b : buckets_) out.push_back(b.params);
  return out;
}

std::vector<Tensor> DataParallel::grad_buffers() const {
  std::vector<Tensor> out;
  for (const Bucket& b : buckets_) out.push_back(b.buffer);
  return out;
}

}  // namespace ms
