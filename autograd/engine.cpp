// The backward pass: topological order over the recorded graph, gradients
// always accumulated, leaves' hooks fired as soon as their gradient is final.
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ms {

static thread_local bool t_grad_enabled = true;

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* op, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward) {
  auto node = std::make_shared<Node>();
  node->op = op;
  for (Tensor& t : inputs)
    if (!(t.defined() && t.requires_grad())) t = Tensor();
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  out.impl()->grad_fn = node;
  out.impl()->requires_grad = true;
}

// Reverse-postorder DFS from the root: every tensor appears after all tensors
// computed from it, so when we reach a tensor its gradient is complete.
static std::vector<Tensor> topological_order(const Tensor& root) {
  std::vector<Tensor> post;
  std::unordered_set<TensorImpl*> seen{root.impl()};
  std::vector<std::pair<Tensor, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [t, next] = stack.back();
    Node* node = t.grad_fn().get();
    if (node && next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      if (in.defined() && seen.insert(in.impl()).second) stack.push_back({in, 0});
      continue;
    }
    post.push_back(t);
    stack.pop_back();
  }
  return {post.rbegin(), post.rend()};
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  MS_CHECK(requires_grad(), "backward: tensor of shape ", shape_str(shape()),
           " does not require grad (no input of its graph has requires_grad)");
  Tensor seed = grad;
  if (!seed.defined()) {
    MS_CHECK(numel() == 1, "backward: output of shape ", shape_str(shape()),
             " is not a scalar; pass its gradient explicitly");
    seed = ones(shape(), dtype());
  }
  MS_CHECK(seed.shape() == shape(), "backward: gradient shape ", shape_str(seed.shape()),
           " does not match output shape ", shape_str(shape()));

  NoGradGuard no_grad;  // the backward pass itself is not recorded
  std::unordered_map<TensorImpl*, Tensor> grads;
  grads[impl()] = seed;
  for (Tensor& tensor : topological_order(*this)) {
    TensorImpl* t = tensor.impl();
    auto found = grads.find(t);
    if (found == grads.end()) continue;  // no path from the root carries gradient here
    Tensor g = found->second;
    grads.erase(found);
    if (!t->grad_fn) {
      // A leaf: accumulate into .grad (cloned the first time: g may alias another tensor).
      if (!t->grad) {
        t->grad = clone(g).impl_ptr();
      } else {
        Tensor acc(t->grad);
        add_(acc, g);
      }
      for (GradHook& hook : t->grad_hooks) hook(tensor);
      continue;
    }
    Node& node = *t->grad_fn;
    MS_CHECK(node.backward != nullptr, "backward: the graph through '", node.op,
             "' was already freed by an earlier backward(); pass retain_graph=true to the "
             "first backward() to run it twice");
    std::vector<Tensor> input_grads = node.backward(g);
    // A custom op's backward (record()) is user code: its mistakes are errors, not aborts.
    MS_CHECK(input_grads.size() == node.inputs.size(), "backward of '", node.op, "' returned ",
             input_grads.size(), " gradients for its ", node.inputs.size(), " inputs");
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Tensor& in = node.inputs[i];
      if (!in.defined()) continue;
      const Tensor& gi = input_grads[i];
      MS_CHECK(gi.defined() && gi.shape() == in.shape() && gi.dtype() == in.dtype(), "backward of '",
               node.op, "': gradient ", i, " is ",
               gi.defined() ? shape_str(gi.shape()) + " " + dtype_name(gi.dtype()) : "undefined",
               " but input ", i, " is ", shape_str(in.shape()), " ", dtype_name(in.dtype()));
      auto [slot, inserted] = grads.try_emplace(in.impl(), gi);
      if (!inserted) slot->second = add(slot->second, gi);
    }
    if (!retain_graph) node.release();
  }
}

}  // namespace ms
