// A Node is one recorded op in the define-by-run graph: the inputs it must
// send gradients to, and the backward function written beside its forward.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace ms {

struct Node {
  std::string op;               // for error messages: "matmul", "layernorm", ...
  std::vector<Tensor> inputs;   // undefined where an input needs no gradient
  // grad_output -> one gradient per input (undefined where inputs[i] is undefined).
  // Saved tensors live in the closure; release() drops them after backward.
  std::function<std::vector<Tensor>(const Tensor& grad_output)> backward;

  void release() { backward = nullptr; }
};

// True when an op with these inputs must record a Node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Attaches a Node to `out` (making it require grad). `inputs` are recorded
// only where they require grad.
void record(Tensor& out, const char* op, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward);

}  // namespace ms
