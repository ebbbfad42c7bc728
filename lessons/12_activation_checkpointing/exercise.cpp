// Lesson 12 exercise: write recompute-in-backward, then run `make lesson L=12 TRY=1`.
//
// Tools (autograd/ops.h, autograd/node.h, autograd/grad_mode.h, tensor/random.h):
//   ms::NoGradGuard g;       ops in its scope record no graph (and keep nothing for backward)
//   ms::EnableGradGuard g;   grad mode back on — backward functions run with it off
//   ms::detach(t)            same storage, no history: a new leaf
//   t.set_requires_grad(true), t.requires_grad(), t.grad()
//   y.backward(dy)           backpropagate dy from y through y's graph
//   ms::record(y, "name", {inputs}, backward)   as in lessons 02 and 08: attaches ONE Node
//                            to y whose backward maps dL/dy to one gradient per input
//   ms::Generator is a value: `ms::Generator copy = *g;` snapshots a stream, `*g = copy;`
//                            puts it back
#include "lessons/12_activation_checkpointing/lesson.h"

ms::Tensor my_checkpoint(const std::function<ms::Tensor(const ms::Tensor&)>& block,
                         const ms::Tensor& x, const std::vector<ms::Generator*>& streams) {
  // TODO 1: snapshot the streams, then run block(x) under a NoGradGuard (detach its output).
  // TODO 2: record one Node "my_checkpoint" with input {x}, saving only ms::detach(x).
  // TODO 3: its backward: replay the snapshot, recompute the block with grad on from a fresh
  //         leaf, put the streams back, backpropagate dy, return {the leaf's grad}.
  (void)block, (void)x, (void)streams;  // delete this line once you use them
  throw ms::Error("TODO: write my_checkpoint in lessons/12_activation_checkpointing/exercise.cpp");
}
