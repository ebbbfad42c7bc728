// Placements relative to a real group (tensor/placement.h): the helpers the
// parallel code calls at its boundaries. Over a 1-rank group nothing is set
// or checked: such a group issues no collective, and its one rank holds the
// whole value however it is described.
#pragma once
#include <string>

#include "parallel/comm/communicator.h"
#include "tensor/placement.h"
#include "tensor/tensor.h"

namespace ms {

inline void place_over(const Tensor& t, MeshAxis axis, const Communicator& group, Placement p,
                       const std::string& label = {}) {
  if (group.size() > 1) set_placement(t, axis, p, label);
}

// The check a reduction over `group` makes before it runs: reducing a
// replicated tensor (already reduced) would multiply it by the group size or,
// averaged, leave it but double the traffic and hide a double average.
inline void refuse_reduced_twice(const Tensor& t, MeshAxis axis, const Communicator& group,
                                 const char* op) {
  if (group.size() > 1)
    refuse_placement(t, axis, Placement::Kind::Replicated, op,
                     "it was already reduced over this group, and reducing it again counts "
                     "every rank's share twice (a reduction done twice?)");
}

}  // namespace ms
