#include "parallel/dp/data_parallel.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/kernels.h"
#include "parallel/dp/grad_placement.h"

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
          /*max_in_flight=*/0, [this](int k) { return launch(k); }, [this](int k) { complete(k); }),
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
  skipped_.assign(buckets_.num_buckets(), false);
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
  // The gradient now owes the average over dp (every micro-step: an
  // accumulated gradient owes it as much as the first one did).
  mark_grad_owed(grad_slot_[i], p, i, axis_, dp_);
  if (!sync_) return;  // accumulating: communicate on the last micro-step only
  buckets_.grad_ready(i);
}

Work DataParallel::launch(int k) {
  const char* op =
      axis_ == MeshAxis::ExpertDP ? "expert-dp bucket all-reduce" : "DDP bucket all-reduce";
  for (int i : buckets_.bucket(k)) refuse_reduced_twice(grad_slot_[i], axis_, dp_, op);
  // The planted bug: the experts' reduction over expert-dp is never issued
  // (their gradients are kept out of the dense dp reduction, rightly, and
  // then nothing reduces them). Every rank skips it alike: no hang.
  skipped_[k] =
      axis_ == MeshAxis::ExpertDP && planted_bug() == PlantedBug::SkipExpertGradientReduce;
  if (skipped_[k]) return Work();
  // Average, not sum: each rank's loss is a mean over ITS batch, so the mean
  // of the D gradients is the gradient of the mean loss over all D·B samples.
  return dp_.iall_reduce(buffers_[k], ReduceOp::Avg);
}

// In place: the slots now hold the average, the same on every rank.
void DataParallel::complete(int k) {
  if (skipped_[k]) return;
  for (int i : buckets_.bucket(k)) place_over(grad_slot_[i], axis_, dp_, Placement::replicated());
}

void DataParallel::finish_gradient_sync() {
  // Normally every bucket launched during backward. If a parameter got no
  // gradient, its bucket is launched now (in order, so ranks still match).
  buckets_.flush(GradBuckets::IfIdle::LaunchAll);
  // The planted bug: the dp reduction runs a second time (a manual average
  // after DDP's own, the classic "divide by world size twice"). The first
  // bucket's check refuses it on every rank before any collective.
  if (axis_ == MeshAxis::DP && planted_bug() == PlantedBug::AverageGradientTwice)
    for (int k = 0; k < buckets_.num_buckets(); ++k) {
      launch(k).wait();
      complete(k);
    }
  // Every parameter's .grad is its averaged slot (also one that got no gradient).
  for (size_t i = 0; i < params_.size(); ++i) params_[i].set_grad(grad_slot_[i]);
}

void DataParallel::zero_grad() {
  NoGradGuard no_grad;
  for (Tensor& b : buffers_) fill_(b, 0);
  for (const Tensor& slot : grad_slot_) forget_placements(slot);  // zeros owe nothing
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
