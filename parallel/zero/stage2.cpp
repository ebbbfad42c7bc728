#include "parallel/zero/stage2.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/kernels.h"
#include "parallel/dp/data_parallel.h"  // bucket_by_size
#include "parallel/dp/grad_placement.h"

namespace ms {

ZeroStage2::ZeroStage2(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes,
                       std::optional<DType> grad_dtype)
    : ZeroStage2(params, std::move(dp), bucket_by_size(params, bucket_bytes), grad_dtype) {}

ZeroStage2::ZeroStage2(std::vector<Tensor> params, Communicator dp,
                       const std::vector<std::vector<int>>& groups,
                       std::optional<DType> grad_dtype)
    : ZeroShardedStage(std::move(params), std::move(dp), groups, grad_dtype),
      // Each group is a bucket, launched in group order as DDP launches its
      // buckets. At most two in flight, like DeepSpeed's overlap_comm double
      // buffering: one communicates while backward fills the next, and the
      // full-gradient memory in flight stays two buckets instead of growing to 4Ψ.
      buckets_(
          groups, static_cast<int>(layout_.params().size()), /*max_in_flight=*/2,
          [this](int g) { return launch(g); }, [this](int g) { complete(g); }) {
  // The only gradient memory that lasts: my slices, 4Ψ/D. Each slice's
  // optimizer tensor reads its part of it as .grad.
  grad_slices_flat_ =
      optim_kernels::zeros_on({layout_.slices_numel()}, grad_dtype_, layout_.device());
  for (int g = 0; g < layout_.num_groups(); ++g) {
    const FlatGroup& grp = layout_.group(g);
    param_slices_[g].set_grad(narrow(grad_slices_flat_, 0, grp.slice_offset, grp.slice_numel));
    // Only reduce-scatter outputs are ever added here: always my partition.
    mark_partition_reduced(g, {});
  }
  sending_.resize(layout_.num_groups());
  receiving_.resize(layout_.num_groups());
}

// Gradients: no flat copy is kept. We only count arrivals per group; the
// parameter keeps the .grad backward gave it until its group is launched.
void ZeroStage2::on_grad_ready(int i) {
  const Tensor& p = layout_.params()[i];
  mark_grad_owed(p.grad(), p, i, axis_, dp_);
  buckets_.grad_ready(i);
}

Work ZeroStage2::launch(int g) {
  std::vector<Tensor> entering;
  for (int i : layout_.group(g).params) {
    const Tensor grad = layout_.params()[i].grad();
    if (!grad.defined()) continue;  // counts as zero
    refuse_reduced_twice(grad, axis_, dp_, "ZeRO-2 bucket reduce-scatter");
    entering.push_back(grad);
  }
  for (const Tensor& grad : entering) carry_other_debts(param_slices_[g].grad(), grad, axis_);
  sending_[g] = layout_.pack_grads(g, grad_dtype_);
  receiving_[g] =
      Tensor::empty({layout_.group(g).slice_numel}, grad_dtype_, layout_.device());
  // The full gradients are released right away: this line is stage 2.
  for (int i : layout_.group(g).params) layout_.params()[i].zero_grad();
  Work work = dp_.ireduce_scatter(sending_[g], receiving_[g], ReduceOp::Avg);
  note_memory();
  return work;
}

// Adds my averaged slice into my gradient slice (adding: micro-steps accumulate
// there). The group's flat full gradients are freed here.
void ZeroStage2::complete(int g) {
  NoGradGuard no_grad;
  Tensor grad = param_slices_[g].grad();
  add_(grad, receiving_[g]);
  sending_[g] = receiving_[g] = Tensor();
}

void ZeroStage2::finish_pending() {
  // A group with a parameter that got no gradient is launched now (that
  // gradient counts as zero), still in order. Before the first micro-step's
  // backward nothing has arrived, and nothing is sent.
  buckets_.flush(GradBuckets::IfIdle::Skip);
}

// Before each micro-step's backward: the previous micro-step's buckets are done.
void ZeroStage2::set_gradient_sync(bool) {
  finish_pending();
}

void ZeroStage2::reduce_gradients() {
  finish_pending();
}

void ZeroStage2::after_step() {
  NoGradGuard no_grad;
  fill_(grad_slices_flat_, 0);
  for (int g = 0; g < layout_.num_groups(); ++g) mark_partition_reduced(g, {});
  all_gather_params();  // unchanged from stage 1
  note_memory();
}

void ZeroStage2::count_memory(MemoryCounter& counter) const {
  ZeroShardedStage::count_memory(counter);
  counter.add(MemoryCounter::Grads, grad_slices_flat_);
  for (const Tensor& t : sending_) counter.add(MemoryCounter::Buffers, t);
  for (const Tensor& t : receiving_) counter.add(MemoryCounter::Buffers, t);
}

// Full parameters (4 bytes per padded element in f32, 2 in mixed precision);
// gradients and optimizer state only for my slices.
size_t ZeroStage2::layout_bytes(size_t K) const {
  size_t padded = 0;
  for (int g = 0; g < layout_.num_groups(); ++g) padded += layout_.group(g).padded;
  return dtype_size(layout_.dtype()) * padded +
         (dtype_size(grad_dtype_) + K) * static_cast<size_t>(layout_.slices_numel());
}

}  // namespace ms
