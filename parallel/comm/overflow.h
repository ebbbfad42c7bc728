// Every rank takes the same skip decision.
//
// With fp16 loss scaling a step whose gradients hold an inf or NaN is skipped
// (optim/loss_scaler.h). The ranks must agree: if one rank skipped while the
// others stepped, the replicas' weights would differ from then on, and the
// loss scalers' states too, so the next collectives would mix different
// models — silently. A rank may see an overflow alone whenever its gradients
// differ from the others': a ZeRO partition holds a different slice on each
// dp rank; tensor- and pipeline-parallel ranks hold different layers.
//
// DeepSpeed's ZeRO-1/2 `has_overflow` does it with a MAX all-reduce of the
// local flag over the data-parallel group, then over the model-parallel
// group; this is that protocol, one 1-element all-reduce per group:
//   bool overflow = agree_on_overflow(has_overflow(grads),
//                                     {&mesh.dp(), &mesh.tp(), &mesh.pp()});
// Reducing along each axis of the mesh in turn gives the max over the whole
// grid: after the dp reduction the flag is constant on every dp group, so
// the tp reduction takes the max over dp × tp, and pp then over all ranks.
#pragma once
#include <initializer_list>

#include "parallel/comm/communicator.h"

namespace ms {

// Collective over every group given, in the order given (every rank passes
// the same kinds of groups in the same order; nullptr entries are skipped,
// for a parallelism not in use). The groups must be the axes of one mesh
// (each rank in one group per axis, sizes multiplying to the world size) for
// the result to be the max over all ranks. Returns true on every rank when
// any rank's `local` is true.
bool agree_on_overflow(bool local, std::initializer_list<Communicator*> groups);

}  // namespace ms
