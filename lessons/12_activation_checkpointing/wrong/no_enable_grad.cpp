// expect: your recompute ran with grad mode OFF
// expect: the missing EnableGradGuard, not a detached input
// Lesson 12, deliberately wrong: recomputes in backward without ms::EnableGradGuard. The engine
// runs backward functions with grad off, so the recompute builds no graph and no gradient flows.
#include "lessons/12_activation_checkpointing/lesson.h"

ms::Tensor my_checkpoint(const std::function<ms::Tensor(const ms::Tensor&)>& block,
                         const ms::Tensor& x, const std::vector<ms::Generator*>& streams) {
  // A Generator is its whole state: a copy is a snapshot of the stream.
  std::vector<ms::Generator> at_forward;
  for (ms::Generator* g : streams) at_forward.push_back(*g);
  ms::Tensor y;
  {
    ms::NoGradGuard no_grad;   // no graph: the block's intermediates die when it returns
    y = ms::detach(block(x));  // a fresh node of our own, whatever the block returned
  }
  ms::Tensor saved = ms::detach(x);  // shares x's storage: no extra bytes
  const bool x_needs_grad = x.requires_grad();
  auto backward = [block, saved, x_needs_grad, streams, at_forward](const ms::Tensor& dy) {
    // The RNG trap: the streams have moved on since the forward (later blocks,
    // the next micro-batch). Replay the forward's masks, then put them back.
    std::vector<ms::Generator> now;
    for (ms::Generator* g : streams) now.push_back(*g);
    for (size_t i = 0; i < streams.size(); ++i) *streams[i] = at_forward[i];
    ms::Tensor in = ms::detach(saved);  // a fresh leaf: its .grad is dL/dx
    if (x_needs_grad) in.set_requires_grad(true);
    ms::Tensor y2;
    y2 = block(in);  // BUG: no ms::EnableGradGuard: backward runs with grad off, no graph is built
    for (size_t i = 0; i < streams.size(); ++i) *streams[i] = now[i];
    y2.backward(dy);  // through the rebuilt graph only; parameter grads accumulate
    return std::vector<ms::Tensor>{x_needs_grad ? in.grad() : ms::Tensor()};
  };
  ms::record(y, "my_checkpoint", {x}, backward);
  return y;
}
