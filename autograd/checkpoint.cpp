#include "autograd/checkpoint.h"

#include <utility>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ms {

namespace {

// A Generator is its whole state (SplitMix64 state + Box–Muller spare), so a
// copy is a snapshot.
std::vector<Generator> snapshot(const std::vector<Generator*>& gens) {
  std::vector<Generator> states;
  states.reserve(gens.size());
  for (Generator* g : gens) states.push_back(*g);
  return states;
}

void restore(const std::vector<Generator*>& gens, const std::vector<Generator>& states) {
  for (size_t i = 0; i < gens.size(); ++i) *gens[i] = states[i];
}

// Puts the forward-time states in place for the recompute and the current
// ones back afterwards, also when the recompute throws.
class ReplayRng {
 public:
  ReplayRng(const std::vector<Generator*>& gens, const std::vector<Generator>& forward_states)
      : gens_(gens), current_(snapshot(gens)) {
    restore(gens_, forward_states);
  }
  ~ReplayRng() { restore(gens_, current_); }
  ReplayRng(const ReplayRng&) = delete;
  ReplayRng& operator=(const ReplayRng&) = delete;

 private:
  const std::vector<Generator*>& gens_;
  std::vector<Generator> current_;
};

}  // namespace

Tensor checkpoint(std::function<Tensor(const Tensor&)> fn, const Tensor& input,
                  std::vector<Generator*> generators, const char* op) {
  MS_CHECK(fn != nullptr, op, ": no function to run");
  MS_CHECK(input.defined(), op, ": the input is undefined");
  for (Generator* g : generators) MS_CHECK(g != nullptr, op, ": a generator is null");
  if (!grad_enabled()) return fn(input);  // nothing will run backward: nothing to keep

  std::vector<Generator> forward_states = snapshot(generators);
  Tensor y;
  {
    NoGradGuard no_grad;  // no graph: the region's intermediates die as soon as fn returns
    y = fn(input);
  }
  MS_CHECK(y.defined(), op, ": the function returned an undefined tensor");
  // A node of our own: fn may have returned its input or a parameter, whose
  // TensorImpl must not receive our grad_fn.
  y = detach(y);
  const bool input_needs_grad = input.requires_grad();
  Tensor saved = detach(input);  // same storage: the caller's activation, no extra bytes
  record(
      y, op, {input},
      [fn = std::move(fn), saved, input_needs_grad, generators = std::move(generators),
       forward_states = std::move(forward_states)](const Tensor& grad_y) {
        Tensor x = detach(saved);  // a fresh leaf: its .grad is the input's gradient
        if (input_needs_grad) x.set_requires_grad(true);
        Tensor y2;
        {
          ReplayRng replay(generators, forward_states);
          EnableGradGuard grad_on;  // backward() runs under NoGradGuard
          y2 = fn(x);
        }
        // Reentrant: a backward inside the outer backward, over the rebuilt graph only.
        if (y2.requires_grad()) y2.backward(grad_y);
        if (!input_needs_grad) return std::vector<Tensor>{Tensor()};
        Tensor gx = x.grad();
        return std::vector<Tensor>{gx.defined() ? gx : zeros(saved.shape(), saved.dtype(), saved.device())};
      });
  return y;
}

}  // namespace ms
