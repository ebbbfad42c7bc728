// The backward pass: nodes run once all their consumers have sent gradient
// (Kahn's algorithm over dependency counts), gradients always accumulate, and
// a leaf's hooks fire as soon as its last contribution arrives — which is what
// lets data parallelism start all-reducing early buckets while later layers'
// backward is still running.
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"

namespace ms {

static thread_local bool t_grad_enabled = true;

bool grad_enabled() {
  return t_grad_enabled;
}
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) {
  t_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  t_grad_enabled = previous_;
}
EnableGradGuard::EnableGradGuard() : previous_(t_grad_enabled) {
  t_grad_enabled = true;
}
EnableGradGuard::~EnableGradGuard() {
  t_grad_enabled = previous_;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* op, const std::vector<Tensor>& inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward) {
  auto node = std::make_shared<Node>();
  node->op = op;
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn()) {
        e.node = t.grad_fn();
      } else {
        e.leaf = t.impl_ptr();
      }
      e.shape = t.shape();
      e.dtype = t.dtype();
    }
    node->next.push_back(std::move(e));
  }
  node->backward = std::move(backward);
  out.impl()->grad_fn = node;
  out.impl()->requires_grad = true;
}

namespace {

// Adds a leaf's finished gradient into .grad (cloned the first time: g may
// alias another tensor) and runs its hooks.
void finish_leaf(const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
  if (!leaf->grad) {
    leaf->grad = clone(g).impl_ptr();
  } else {
    Tensor acc(leaf->grad);
    add_(acc, g);
  }
  Tensor param(leaf);
  for (GradHook& hook : leaf->grad_hooks) hook(param);
}

void accumulate(std::unordered_map<const void*, Tensor>& grads, const void* key, const Tensor& g) {
  auto [slot, inserted] = grads.try_emplace(key, g);
  if (!inserted) slot->second = add(slot->second, g);
}

}  // namespace

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  MS_CHECK(requires_grad(), "backward: tensor of shape ", shape_str(shape()),
           " does not require grad (no input of its graph has requires_grad)");
  Tensor seed = grad;
  if (!seed.defined()) {
    MS_CHECK(numel() == 1, "backward: output of shape ", shape_str(shape()),
             " is not a scalar; pass its gradient explicitly");
    seed = ones(shape(), dtype(), device());
  }
  MS_CHECK(seed.shape() == shape(), "backward: gradient shape ", shape_str(seed.shape()),
           " does not match output shape ", shape_str(shape()));

  NoGradGuard no_grad;  // the backward pass itself is not recorded
  if (is_leaf()) {
    finish_leaf(impl_ptr(), seed);
    return;
  }
  // Count, for every reachable node and leaf, the edges that will bring it gradient.
  std::unordered_map<const void*, int> pending;
  std::vector<Node*> stack{grad_fn().get()};
  std::unordered_set<Node*> seen{grad_fn().get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next) {
      if (e.node) {
        ++pending[e.node.get()];
        if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
      } else if (e.leaf) {
        ++pending[e.leaf.get()];
      }
    }
  }

  std::unordered_map<const void*, Tensor> grads{{grad_fn().get(), seed}};
  std::vector<std::shared_ptr<Node>> ready{grad_fn()};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Tensor g;
    if (auto found = grads.find(node.get()); found != grads.end()) {
      g = std::move(found->second);
      grads.erase(found);
    }
    MS_CHECK(node->backward != nullptr, "backward: the graph through '", node->op,
             "' was already freed by an earlier backward(); pass retain_graph=true to the "
             "first backward() to run it twice");
    std::vector<Tensor> input_grads;
    {
      OpLabel label(node->op.c_str());  // names the op in a device access error
      input_grads = node->backward(g);
    }
    // A custom op's backward (record()) is user code: its mistakes are errors, not aborts.
    MS_CHECK(input_grads.size() == node->next.size(), "backward of '", node->op, "' returned ",
             input_grads.size(), " gradients for its ", node->next.size(), " inputs");
    for (size_t i = 0; i < node->next.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.defined()) continue;
      const Tensor& gi = input_grads[i];
      MS_CHECK(gi.defined() && gi.shape() == e.shape && gi.dtype() == e.dtype, "backward of '",
               node->op, "': gradient ", i, " is ",
               gi.defined() ? shape_str(gi.shape()) + " " + dtype_name(gi.dtype()) : "undefined",
               " but input ", i, " is ", shape_str(e.shape), " ", dtype_name(e.dtype));
      const void* key = e.node ? static_cast<const void*>(e.node.get()) : e.leaf.get();
      accumulate(grads, key, gi);
      if (--pending[key] > 0) continue;
      if (e.node) {
        ready.push_back(e.node);
      } else {
        Tensor done = std::move(grads[key]);
        grads.erase(key);
        finish_leaf(e.leaf, done);
      }
    }
    if (!retain_graph) node->release();
  }
}

}  // namespace ms
