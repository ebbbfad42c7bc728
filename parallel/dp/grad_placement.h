// The placements of gradients (docs/architecture.md, "Placements"): what the
// reducers — DDP's buckets, the ZeRO stages, the pipeline's tied-embedding
// sum, the expert-dp reduction — say about the gradients they owe and the
// gradients they produce.
//
// The rule: a reducer over a group marks a parameter's gradient partial(sum)
// over that group where the gradient ENTERS it (its gradient hook, which runs
// on every backward, so every micro-step of an accumulation re-marks the
// accumulated gradient and nothing errs), refuses one already replicated
// there before its collective (refuse_reduced_twice: the gradient averaged
// twice), and marks what it produces: replicated (an all-reduce) or, for the
// partition a ZeRO rank keeps, sharded(0) over the group. The optimizer and
// the gradient norm then refuse a gradient still partial over ANY axis
// (optim/grad_check.h).
#pragma once
#include <string>

#include "parallel/comm/placement.h"

namespace ms {

// "h.0.mlp.c_fc.weight" when the parameter carries a label (ZeroOptimizer
// labels the model's parameters with their names), else "parameter #i".
inline std::string param_name(const Tensor& param, size_t index) {
  const std::string& name = param.impl()->placements.label;
  return name.empty() ? "parameter #" + std::to_string(index) : name;
}
inline std::string grad_label(const Tensor& param, size_t index) {
  return param_name(param, index) + " grad";
}

// Where a reducer over `group` takes a gradient in: it now owes that
// reduction. Runs for every parameter on every backward, so the label is
// built only when it will be set (a group of more than one rank, checks on).
inline void mark_grad_owed(const Tensor& grad, const Tensor& param, size_t index, MeshAxis axis,
                           const Communicator& group) {
  if (group.size() <= 1 || !placement_checks_enabled()) return;
  set_placement(grad, axis, Placement::partial(), grad_label(param, index));
}

// A debt a gradient owes over another group is not paid by this reduction:
// the bucket's output still owes it (the tied wte's embedding-group sum,
// entering ZeRO-1's flat partition). The tp axis is left to the tp code
// (parallel/tp), which sums sequence parallelism's replicated gradients on
// the partition after the dp reduction.
inline void carry_other_debts(const Tensor& to, const Tensor& from, MeshAxis reduced) {
  if (!to.defined() || !from.defined()) return;
  for (int i = 0; i < kMeshAxes; ++i) {
    const auto axis = static_cast<MeshAxis>(i);
    if (axis == reduced || axis == MeshAxis::TP) continue;
    if (placement_of(from, axis).is(Placement::Kind::Partial))
      set_placement(to, axis, Placement::partial());
  }
}

// Every axis back to unknown (a zeroed gradient buffer owes nothing yet).
inline void forget_placements(const Tensor& t) {
  if (!t.defined()) return;
  for (int i = 0; i < kMeshAxes; ++i)
    set_placement(t, static_cast<MeshAxis>(i), Placement::unknown());
}

}  // namespace ms
