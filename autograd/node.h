// A Node is one recorded op in the define-by-run graph: edges to where its
// inputs' gradients go, and the backward function written beside its forward.
//
// Edges point at the *producer* of each input (its Node) or, for a leaf, at
// the leaf itself — never at a non-leaf input tensor. So an intermediate that
// no backward needs (e.g. a residual branch's output) is freed as soon as the
// forward drops it, as in PyTorch; only what a backward closure saved stays.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace ms {

struct Node;

struct Edge {
  std::shared_ptr<Node> node;        // the op that produced this input, or
  std::shared_ptr<TensorImpl> leaf;  // the leaf tensor (parameters, inputs)
  Shape shape;                       // the input's shape and dtype, to check gradients
  DType dtype = DType::F32;
  bool defined() const { return node || leaf; }
};

struct Node {
  std::string op;          // for error messages: "matmul", "layernorm", ...
  std::vector<Edge> next;  // one per input; undefined where the input needs no gradient
  // grad_output -> one gradient per input (may be undefined where next[i] is).
  // Saved tensors live in the closure; release() drops them after backward.
  std::function<std::vector<Tensor>(const Tensor& grad_output)> backward;

  void release() { backward = nullptr; }
};

// True when an op with these inputs must record a Node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Attaches a Node to `out` (making it require grad), with an edge for each
// input that requires grad.
void record(Tensor& out, const char* op, const std::vector<Tensor>& inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward);

}  // namespace ms
