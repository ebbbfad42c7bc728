#include "parallel/dp/data_parallel.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/kernels.h"

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

// Runs in the initializer list, where GradBuckets is built, so a zero cap is
// an error before any bucket is formed.
static std::vector<std::vector<int>> checked_buckets(const std::vector<Tensor>& params,
                                                     size_t bucket_bytes) {
  MS_CHECK(bucket_bytes > 0, "DataParallel: bucket_bytes must be positive");
  return bucket_by_size(params, bucket_bytes);
}

DataParallel::DataParallel(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes,
                           std::optional<DType> grad_dtype)
    : params_(std::move(params)),
      dp_(std::move(dp)),
      buckets_(
          checked_buckets(params_, bucket_bytes), static_cast<int>(params_.size()),
          // No bound: the buffers are the gradients' storage anyway, nothing to save.
          /*max_in_flight=*/0,
          // Average, not sum: each rank's loss is a mean over ITS batch, so the mean
          // of the D gradients is the gradient of the mean loss over all D·B samples.
          [this](int k) { return dp_.iall_reduce(buffers_[k], ReduceOp::Avg); },
          [](int) {}),  // in place: nothing to do once it is done
      self_(std::make_shared<DataParallel*>(this)) {
  // 1. Same starting point everywhere: rank 0's parameters.
  for (Tensor& p : params_) {
    MS_CHECK(p.dtype() == params_[0].dtype() && is_float_dtype(p.dtype()) && p.is_contiguous() &&
                 p.requires_grad(),
             "DataParallel: parameters must be contiguous float leaves of one dtype that "
             "require grad, got ",
             dtype_name(p.dtype()), " ", shape_str(p.shape()));
    Tensor data = detach(p);  // the same memory, outside autograd
    dp_.broadcast(data, 0);
  }
  // 2. Buckets in reverse order, each one flat buffer; a parameter's gradient
  //    slot is a view of its bucket, shaped like the parameter.
  grad_slot_.resize(params_.size());
  for (int k = 0; k < buckets_.num_buckets(); ++k) {
    int64_t numel = 0;
    for (int i : buckets_.bucket(k)) numel += params_[i].numel();
    // Mixed precision: the dtype gradients are reduced in (parallel/zero/mixed_precision.h).
    // On the parameters' device: the buckets are what the all-reduce moves.
    const Tensor& first = params_[buckets_.bucket(k)[0]];
    buffers_.push_back(
        optim_kernels::zeros_on({numel}, grad_dtype.value_or(first.dtype()), first.device()));
    int64_t offset = 0;
    for (int i : buckets_.bucket(k)) {
      const Shape& shape = params_[i].shape();
      grad_slot_[i] = Tensor::make_view(buffers_[k], shape, contiguous_strides(shape), offset);
      offset += params_[i].numel();
    }
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
  *self_ = nullptr;  // buckets_ waits for what MPI may still be writing
}

// Runs inside backward, as soon as parameter i's gradient is final.
void DataParallel::on_grad_ready(int i) {
  Tensor& p = params_[i];
  // Move the gradient into its bucket slot, once: from then on the engine
  // accumulates straight into the slot, because p.grad IS the slot.
  if (!p.grad().same(grad_slot_[i])) {
    copy_(grad_slot_[i], p.grad());
    p.set_grad(grad_slot_[i]);
  }
  if (!sync_) return;  // accumulating: communicate on the last micro-step only
  buckets_.grad_ready(i);
}

void DataParallel::finish_gradient_sync() {
  // Normally every bucket launched during backward. If a parameter got no
  // gradient, its bucket is launched now (in order, so ranks still match).
  buckets_.flush(GradBuckets::IfIdle::LaunchAll);
  // Every parameter's .grad is its averaged slot (also one that got no gradient).
  for (size_t i = 0; i < params_.size(); ++i) params_[i].set_grad(grad_slot_[i]);
}

void DataParallel::zero_grad() {
  NoGradGuard no_grad;
  for (Tensor& b : buffers_) fill_(b, 0);
}

std::vector<std::vector<int>> DataParallel::buckets() const {
  std::vector<std::vector<int>> out;
  for (int k = 0; k < buckets_.num_buckets(); ++k) out.push_back(buckets_.bucket(k));
  return out;
}

std::vector<Tensor> DataParallel::grad_buffers() const {
  return buffers_;
}

}  // namespace ms
