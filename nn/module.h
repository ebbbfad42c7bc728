// Module: a node in the model tree with named parameters and named children,
// so every parameter has a dotted path ("h.0.attn.c_attn.weight") — the names
// safetensors files, ZeRO's flat buffers and checkpoints all key on.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace ms {

class Module {
 public:
  virtual ~Module() = default;

  // Parameters of this module and all children, depth-first in registration order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;
  // This module and every descendant, depth-first in registration order (for
  // code that looks for modules of one kind from outside, e.g. activation
  // checkpointing collecting a block's Dropout generators).
  std::vector<Module*> modules();
  // The parameter at a dotted path; an error naming the path if there is none.
  Tensor parameter(const std::string& path) const;
  // The parameter at `path` takes `value`'s data and shape, keeping its
  // identity: every handle to it (the layer's member, named_parameters(), an
  // optimizer built later) sees the new tensor, as FlatParams::bind repoints
  // parameters. Its gradient is dropped. For code that reshapes a model from
  // outside: tensor parallelism cuts each parameter to its shard
  // (parallel/tp/tp_gpt.h), as Megatron builds each rank's layer at its shard
  // shape. `value` must be a contiguous tensor of the parameter's dtype.
  void replace_parameter(const std::string& path, const Tensor& value);

  // Every parameter becomes a `dtype` copy of itself (round-to-nearest-even
  // into bf16/f16), keeping its identity like replace_parameter; gradients are
  // dropped. Mixed precision holds the model this way, 2 bytes per parameter,
  // while ZeroOptimizer keeps the fp32 masters (parallel/zero/mixed_precision.h).
  void cast_parameters(DType dtype);
  // Every parameter moves to `device` (Tensor::to: one transfer each),
  // keeping its identity like cast_parameters; gradients are dropped. As
  // torch's module.to(device), before the optimizer is built. Modules hold no
  // buffers besides parameters (Dropout's generator stays on the host: masks
  // are drawn there and copied, autograd/ops.h DropoutMask).
  void to(Device device);

  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  void zero_grad();

 protected:
  Tensor register_parameter(const std::string& name, Tensor value);
  // A child named "" adds no level to the names: its parameters appear under
  // this module's own prefix. That is how a wrapper holds the module it wraps
  // without renaming its parameters (FSDP strips its "_fsdp_wrapped_module."
  // for the same reason).
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    children_.emplace_back(name, child);
    return child;
  }
  // Puts `child` in the place of the child registered as `name` (same
  // position, so named_parameters() keeps its order).
  void replace_module(const std::string& name, std::shared_ptr<Module> child);

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace ms
