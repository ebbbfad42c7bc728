// expect: no saving
// Lesson 12, deliberately wrong: runs the forward with grad on and keeps its graph in the Node:
// right gradients, but every activation stays alive — checkpointing in name only.
#include "lessons/12_activation_checkpointing/lesson.h"

ms::Tensor my_checkpoint(const std::function<ms::Tensor(const ms::Tensor&)>& block,
                         const ms::Tensor& x, const std::vector<ms::Generator*>& streams) {
  (void)streams;  // nothing is recomputed, so nothing to replay
  ms::Tensor in = ms::detach(x);
  if (x.requires_grad()) in.set_requires_grad(true);
  ms::Tensor full = block(in);  // BUG: with grad on: the whole graph is built and kept
  ms::Tensor y = ms::detach(full);
  auto backward = [full, in](const ms::Tensor& dy) {
    full.backward(dy);  // through the graph kept since the forward: no recompute
    return std::vector<ms::Tensor>{in.grad()};
  };
  ms::record(y, "my_checkpoint", {x}, backward);
  return y;
}
