#include "parallel/zero/stage.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "parallel/dp/grad_placement.h"

namespace ms {

ZeroShardedStage::ZeroShardedStage(std::vector<Tensor> params, Communicator dp,
                                   const std::vector<std::vector<int>>& groups,
                                   std::optional<DType> grad_dtype)
    : layout_(std::move(params), groups, dp.size()),
      dp_(std::move(dp)),
      grad_dtype_(grad_dtype.value_or(layout_.dtype())),
      self_(std::make_shared<ZeroShardedStage*>(this)) {
  const int rank = dp_.rank();
  for (int g = 0; g < layout_.num_groups(); ++g) {
    // Rank 0's values everywhere, then the parameters become views of the buffer.
    Tensor full = layout_.pack_values(g);
    dp_.broadcast(full, 0);
    layout_.bind(g, full);
    full_params_.push_back(full);
    // My slice: a view of the same memory. The optimizer is built over these
    // tensors only, so its state (AdamW's m and v) is sized 1/D of the model.
    param_slices_.push_back(layout_.slice_of(g, full, rank));
  }
  const std::vector<Tensor>& ps = layout_.params();
  for (size_t i = 0; i < ps.size(); ++i) {
    std::shared_ptr<ZeroShardedStage*> self = self_;
    Tensor p = ps[i];
    p.register_grad_hook([self, i](Tensor&) {
      if (*self) (*self)->on_grad_ready(static_cast<int>(i));
    });
  }
}

ZeroShardedStage::~ZeroShardedStage() {
  *self_ = nullptr;
}

void ZeroShardedStage::set_axis(MeshAxis axis) {
  axis_ = axis;
  for (int g = 0; g < layout_.num_groups(); ++g)
    if (param_slices_[g].grad().defined()) mark_partition_reduced(g, {});
}

std::string ZeroShardedStage::partition_label(int g) const {
  const FlatGroup& grp = layout_.group(g);
  auto name = [&](int k) { return param_name(layout_.params()[grp.params[k]], grp.params[k]); };
  return "ZeRO gradient partition " + std::to_string(g) + " (" + name(0) +
         (grp.params.size() > 1 ? " .. " + name(static_cast<int>(grp.params.size()) - 1) : "") +
         ")";
}

void ZeroShardedStage::mark_partition_reduced(int g, const std::vector<Tensor>& entering) {
  const Tensor& mine = param_slices_[g].grad();
  if (!placement_checks_enabled() || !mine.defined()) return;
  forget_placements(mine);
  set_label(mine, partition_label(g));  // also over one rank: other axes may owe
  place_over(mine, axis_, dp_, Placement::sharded(0, 1));
  for (const Tensor& grad : entering) carry_other_debts(mine, grad, axis_);
}

void ZeroShardedStage::all_gather_params() {
  for (int g = 0; g < layout_.num_groups(); ++g) {
    if (!full_params_[g].defined()) continue;
    // The Communicator's all-gather cannot run in place (MPI_IN_PLACE), and
    // my slice lives inside full_params_[g], so it travels from a copy.
    Tensor mine = clone(param_slices_[g]);
    dp_.all_gather(mine, full_params_[g]);
  }
}

// Parameter i lies at [offset, offset + numel) of its group's buffer; my slice
// of the group is [r·s, (r+1)·s). Their overlap, relative to the slice.
std::vector<ZeroStage::Ranges> ZeroShardedStage::ranges_of(const std::vector<bool>& which) {
  MS_ASSERT(which.size() == layout_.params().size(), "ranges_of: ", which.size(), " flags for ",
            layout_.params().size(), " parameters");
  std::vector<Ranges> out(layout_.num_groups());
  for (int g = 0; g < layout_.num_groups(); ++g) {
    const FlatGroup& grp = layout_.group(g);
    const int64_t lo = dp_.rank() * grp.slice_numel, hi = lo + grp.slice_numel;
    for (size_t k = 0; k < grp.params.size(); ++k) {
      if (!which[grp.params[k]]) continue;
      const int64_t b = std::max(lo, grp.offsets[k]),
                    e = std::min(hi, grp.offsets[k] + shape_numel(layout_.shape_of(grp.params[k])));
      if (b < e) out[g].emplace_back(b - lo, e - lo);
    }
  }
  return out;
}

void ZeroShardedStage::count_memory(MemoryCounter& counter) const {
  for (const Tensor& t : full_params_) counter.add(MemoryCounter::Params, t);
  for (const Tensor& t : param_slices_) counter.add(MemoryCounter::Params, t);
  for (const Tensor& p : layout_.params()) counter.add(MemoryCounter::Params, p);
  for (const Tensor& t : param_slices_) counter.add(MemoryCounter::Grads, t.grad());
  for (const Tensor& p : layout_.params()) counter.add(MemoryCounter::Grads, p.grad());
}

std::vector<ZeroStage::Ranges> ZeroStage::ranges_of(const std::vector<bool>& which) {
  const std::vector<Tensor> ps = trainable();
  MS_ASSERT(which.size() == ps.size(), "ranges_of: ", which.size(), " flags for ", ps.size(),
            " parameters");
  std::vector<Ranges> out;
  for (size_t i = 0; i < ps.size(); ++i)
    out.push_back(which[i] ? Ranges{{0, ps[i].numel()}} : Ranges{});
  return out;
}

}  // namespace ms
