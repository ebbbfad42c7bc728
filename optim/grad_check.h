// The check every update and every gradient norm makes (docs/architecture.md,
// "Placements"): a gradient still partial(sum) over some group — a reduction
// owed and not done — would give each rank a different update (or norm), and
// the replicas would silently drift apart. An ms::Error names the gradient,
// its placements and the axis instead.
#pragma once
#include "tensor/placement.h"
#include "tensor/tensor.h"

namespace ms {

// `op`: "optimizer step", "gradient norm".
inline void refuse_unreduced_grad(const Tensor& grad, const char* op) {
  if (!grad.defined() || !placement_checks_enabled()) return;
  for (int i = 0; i < kMeshAxes; ++i)
    refuse_placement(grad, static_cast<MeshAxis>(i), Placement::Kind::Partial, op,
                     "the gradient still owes its reduction over this group, so every rank would "
                     "apply a different value (a missing gradient reduction?)");
}

}  // namespace ms
