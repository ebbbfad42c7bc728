#include "parallel/zero/stage1.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/kernels.h"
#include "parallel/dp/grad_placement.h"

namespace ms {

static std::vector<std::vector<int>> whole_model(size_t n) {
  std::vector<int> all;
  for (size_t i = n; i-- > 0;) all.push_back(static_cast<int>(i));  // reverse, as backward runs
  return {all};
}

ZeroStage1::ZeroStage1(std::vector<Tensor> params, Communicator dp,
                       std::optional<DType> grad_dtype)
    : ZeroShardedStage(params, std::move(dp), whole_model(params.size()), grad_dtype) {
  for (int g = 0; g < layout_.num_groups(); ++g)
    full_grads_.push_back(
        optim_kernels::zeros_on({layout_.group(g).padded}, grad_dtype_, layout_.device()));
  for (size_t i = 0; i < layout_.params().size(); ++i) {
    int g = layout_.group_of(static_cast<int>(i));
    grad_slot_.push_back(layout_.view_of(static_cast<int>(i), full_grads_[g]));
  }
}

// Gradients: kept whole, as in DDP. The hook moves each one into the flat
// gradient buffer once; afterwards backward accumulates straight into it.
void ZeroStage1::on_grad_ready(int i) {
  Tensor p = layout_.params()[i];
  if (!p.grad().same(grad_slot_[i])) {
    copy_(grad_slot_[i], p.grad());
    p.set_grad(grad_slot_[i]);
  }
  mark_grad_owed(grad_slot_[i], p, i, axis_, dp_);
}

void ZeroStage1::reduce_gradients() {
  const int rank = dp_.rank();
  for (int g = 0; g < layout_.num_groups(); ++g) {
    std::vector<Tensor> entering;
    for (int i : layout_.group(g).params) {
      refuse_reduced_twice(grad_slot_[i], axis_, dp_, "ZeRO-1 reduce-scatter");
      entering.push_back(grad_slot_[i]);
    }
    if (param_slices_[g].grad().defined() && dp_.size() > 1)
      refuse_placement(param_slices_[g].grad(), axis_, Placement::Kind::Sharded,
                       "ZeRO-1 reduce-scatter",
                       "this step's gradients were already reduced into this partition (a "
                       "reduction done twice?)");
    // Rank r receives the dp-average of slice r of the gradient — exactly the
    // part of the gradient its optimizer needs, nothing more.
    Tensor averaged =
        Tensor::empty({layout_.group(g).slice_numel}, grad_dtype_, layout_.device());
    dp_.reduce_scatter(full_grads_[g], averaged, ReduceOp::Avg);
    note_memory();
    // Keep it in our own slice of the gradient buffer (the other slices now
    // hold stale, un-averaged values nobody reads).
    Tensor mine = layout_.slice_of(g, full_grads_[g], rank);
    copy_(mine, averaged);
    param_slices_[g].set_grad(mine);
    mark_partition_reduced(g, entering);
  }
}

void ZeroStage1::after_step() {
  NoGradGuard no_grad;
  for (Tensor& gf : full_grads_) fill_(gf, 0);
  // The zeroed buffers start owing again: backward fills them with this
  // rank's own gradients, my partition's view included.
  for (const Tensor& slot : grad_slot_) forget_placements(slot);
  for (const Tensor& slice : param_slices_) {
    forget_placements(slice.grad());
    if (slice.grad().defined()) place_over(slice.grad(), axis_, dp_, Placement::partial());
  }
  all_gather_params();  // everyone's updated slices -> everyone's full parameters
  note_memory();
}

void ZeroStage1::count_memory(MemoryCounter& counter) const {
  ZeroShardedStage::count_memory(counter);
  for (const Tensor& gf : full_grads_) counter.add(MemoryCounter::Grads, gf);
}

// Full parameters and full gradients per padded element (4 + 4 bytes in f32,
// 2 + 2 in mixed precision); the optimizer state only for my slices
// (Σ slices = padded / D).
size_t ZeroStage1::layout_bytes(size_t K) const {
  size_t padded = 0;
  for (int g = 0; g < layout_.num_groups(); ++g) padded += layout_.group(g).padded;
  return (dtype_size(layout_.dtype()) + dtype_size(grad_dtype_)) * padded +
         K * static_cast<size_t>(layout_.slices_numel());
}

}  // namespace ms
