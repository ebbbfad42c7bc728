#include "autograd/mixed.h"

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ms::mixed {

std::optional<DType> result_dtype(std::initializer_list<const Tensor*> inputs, const char* op) {
  std::optional<DType> half;
  bool wide = false;  // an f32/f64 input beside the 16-bit one
  for (const Tensor* t : inputs) {
    if (!t->defined()) continue;
    const DType d = t->dtype();
    if (is_half(d)) {
      MS_CHECK(!half || *half == d, op, ": inputs mix bf16 and f16 (", dtype_name(*half), " and ",
               dtype_name(d), "); convert one with to()");
      half = d;
    } else if (d == DType::F32 || d == DType::F64) {
      wide = true;
    }
  }
  if (!half) return std::nullopt;
  return wide ? DType::F32 : *half;
}

Tensor up(const Tensor& t) {
  return t.defined() && is_half(t.dtype()) ? to(t, DType::F32) : t;
}

Tensor down(const Tensor& y, DType dtype) {
  return to(y, dtype);
}

Tensor recompute_in_f32(const char* op, const std::vector<Tensor>& inputs, DType out,
                        const std::function<Tensor(const std::vector<Tensor>&)>& f) {
  Tensor y;
  {
    NoGradGuard no_grad;  // no graph: the f32 casts and intermediates die here
    std::vector<Tensor> ups;
    for (const Tensor& t : inputs) ups.push_back(up(t));
    y = to(f(ups), out);
  }
  std::vector<Tensor> saved;
  std::vector<bool> wants;
  bool any = false;
  for (const Tensor& t : inputs) {
    saved.push_back(t.defined() ? detach(t) : Tensor());  // the caller's storage, no copy
    wants.push_back(t.defined() && t.requires_grad());
    any = any || wants.back();
  }
  if (!grad_enabled() || !any) return y;
  record(y, op, inputs, [saved, wants, f](const Tensor& g) {
    std::vector<Tensor> xs;
    for (size_t i = 0; i < saved.size(); ++i) {
      if (!saved[i].defined()) {
        xs.emplace_back();
        continue;
      }
      Tensor x = detach(to(saved[i], DType::F32));  // a fresh f32 leaf
      if (wants[i]) x.set_requires_grad(true);
      xs.push_back(x);
    }
    Tensor y2;
    {
      EnableGradGuard grad_on;  // backward() runs under NoGradGuard
      y2 = f(xs);
    }
    y2.backward(to(g, DType::F32));  // reentrant, over the rebuilt f32 graph only
    std::vector<Tensor> grads;
    for (size_t i = 0; i < saved.size(); ++i) {
      if (!wants[i]) {
        grads.emplace_back();
        continue;
      }
      Tensor gx = xs[i].grad();
      grads.push_back(gx.defined() ? to(gx, saved[i].dtype())
                                   : zeros(saved[i].shape(), saved[i].dtype(), saved[i].device()));
    }
    return grads;
  });
  return y;
}

}  // namespace ms::mixed
