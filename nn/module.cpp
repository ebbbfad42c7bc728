#include "nn/module.h"

#include "autograd/grad_mode.h"

namespace ms {

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_)
    child->collect(name.empty() ? prefix : prefix + name + ".", out);
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> child) {
  for (auto& [n, c] : children_) {
    if (n != name) continue;
    c = std::move(child);
    return;
  }
  throw Error(str_cat("module: no child named '", name, "' to replace"));
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Module*> Module::modules() {
  std::vector<Module*> out{this};
  for (auto& [name, child] : children_)
    for (Module* m : child->modules()) out.push_back(m);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

Tensor Module::parameter(const std::string& path) const {
  for (auto& [name, t] : named_parameters())
    if (name == path) return t;
  throw Error(str_cat("module: no parameter named '", path, "'"));
}

void Module::replace_parameter(const std::string& path, const Tensor& value) {
  Tensor p = parameter(path);
  MS_CHECK(value.defined() && value.is_contiguous() && value.dtype() == p.dtype(), "module: '",
           path, "' must be replaced by a contiguous ", dtype_name(p.dtype()), " tensor, got ",
           value.defined() ? dtype_name(value.dtype()) : "nothing");
  MS_CHECK(!value.same(p), "module: '", path, "' replaced by itself");
  TensorImpl* t = p.impl();
  t->storage = value.storage();
  t->shape = value.shape();
  t->strides = value.strides();
  t->offset = value.offset();
  p.zero_grad();
}

void Module::cast_parameters(DType dtype) {
  MS_CHECK(is_float_dtype(dtype), "module: parameters cannot be cast to ", dtype_name(dtype));
  for (auto& [name, p] : named_parameters()) {
    if (p.dtype() == dtype) continue;
    NoGradGuard no_grad;
    Tensor value = ms::to(contiguous(p), dtype);
    TensorImpl* t = p.impl();
    t->storage = value.storage();
    t->shape = value.shape();
    t->strides = value.strides();
    t->offset = value.offset();
    t->dtype = dtype;
    p.zero_grad();
  }
}

void Module::to(Device device) {
  for (auto& [name, p] : named_parameters()) {
    if (p.device() == device) continue;
    Tensor value = detach(p).to(device);
    TensorImpl* t = p.impl();
    t->storage = value.storage();
    t->strides = value.strides();
    t->offset = value.offset();
    p.zero_grad();
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (const Tensor& t : parameters()) t.zero_grad();
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

}  // namespace ms
