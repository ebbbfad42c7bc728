// Each op makes one device switch to the tensor/cpu/moe.h kernels and records
// its backward beside the forward (the ops_nn.cpp pattern).
#include "autograd/ops_moe.h"

#include <cmath>
#include <limits>

#include "autograd/mixed.h"
#include "autograd/node.h"
#include "tensor/cpu/moe.h"

namespace ms {

namespace {

void check_routing(const char* op, const MoeRouting& r) {
  MS_CHECK(r.expert.defined() && r.slot.defined(), op, ": routing is empty (call moe_route first)");
}

// DeepSpeed clamps the top-2 denominator at finfo(dtype).eps.
template <typename T>
T renorm_eps() {
  return std::numeric_limits<T>::epsilon();
}

}  // namespace

int64_t moe_capacity(int64_t tokens, int64_t experts, const MoeGateOptions& o) {
  MS_CHECK(experts > 0, "moe_capacity: experts must be positive, got ", experts);
  const float per_expert =
      static_cast<float>(static_cast<double>(tokens) / static_cast<double>(experts));
  const float factor = static_cast<float>(o.capacity_factor * static_cast<double>(o.k));
  const auto capacity = static_cast<int64_t>(std::ceil(per_expert * factor));
  return std::max(capacity, o.min_capacity);
}

int64_t MoeRouting::dropped() const {
  const int32_t* placed = kept.host_data<int32_t>();
  int64_t sum = 0;
  for (int64_t e = 0; e < experts; ++e) sum += placed[e];
  return tokens * k - sum;
}

MoeRouting moe_route(const Tensor& gates, const MoeGateOptions& o) {
  MS_CHECK(gates.dim() == 2, "moe_route: gates must be (S, E), got ", shape_str(gates.shape()));
  MS_CHECK(o.k == 1 || o.k == 2, "moe_route: top-k must be 1 or 2, got ", o.k);
  MoeRouting r;
  r.tokens = gates.shape()[0];
  r.experts = gates.shape()[1];
  r.k = o.k;
  MS_CHECK(o.k <= r.experts, "moe_route: top-", o.k, " needs at least ", o.k, " experts, got ",
           r.experts);
  Tensor g = contiguous(detach(gates));
  r.expert = Tensor::empty({r.tokens, o.k}, DType::I32);
  r.slot = Tensor::empty({r.tokens, o.k}, DType::I32);
  r.counts = Tensor::empty({r.experts}, DType::I32);
  r.kept = Tensor::empty({r.experts}, DType::I32);
  r.fraction = Tensor::empty({r.experts}, g.dtype());
  Tensor first_counts = Tensor::empty({r.experts}, DType::I32);
  if (g.device() != Device::CPU) cuda_kernels_planned("moe_route");
  dispatch_compute(g.dtype(), "moe_route", [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_choose<T>(g.host_data<T>(), r.tokens, r.experts, o.k, r.expert.host_data<int32_t>(),
                       first_counts.host_data<int32_t>(), r.counts.host_data<int32_t>(),
                       r.fraction.host_data<T>());
  });
  if (o.drop_tokens) {
    r.capacity = moe_capacity(r.tokens, r.experts, o);
  } else {
    // DeepSpeed's drop_tokens=False: the capacity is the largest load, so
    // nothing drops (its ep all-reduce MAX of it comes with --ep).
    const int32_t* c = r.counts.host_data<int32_t>();
    r.capacity = 0;
    for (int64_t e = 0; e < r.experts; ++e) r.capacity = std::max<int64_t>(r.capacity, c[e]);
  }
  cpu::moe_assign_slots(r.expert.host_data<int32_t>(), first_counts.host_data<int32_t>(), r.tokens,
                        r.experts, o.k, r.capacity, r.slot.host_data<int32_t>(),
                        r.kept.host_data<int32_t>());
  return r;
}

Tensor moe_gate_weights(const Tensor& gates, const MoeRouting& r) {
  check_routing("moe_gate_weights", r);
  MS_CHECK(gates.dim() == 2 && gates.shape()[0] == r.tokens && gates.shape()[1] == r.experts,
           "moe_gate_weights: gates ", shape_str(gates.shape()), " do not match the routing's (",
           r.tokens, ", ", r.experts, ")");
  Tensor g = contiguous(detach(gates));
  Tensor w = Tensor::empty({r.tokens, r.k}, g.dtype());  // (S, k)
  const bool renormalize = r.k == 2;
  const int64_t S = r.tokens, E = r.experts, k = r.k;
  if (g.device() != Device::CPU) cuda_kernels_planned("moe_gate_weights");
  dispatch_compute(g.dtype(), "moe_gate_weights", [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_gate_weights_forward<T>(w.host_data<T>(), g.host_data<T>(),
                                     r.expert.host_data<int32_t>(), r.slot.host_data<int32_t>(), S,
                                     E, k, renormalize, renorm_eps<T>());
  });
  if (needs_grad({&gates})) {
    record(w, "moe_gate_weights", {gates},
           [g, wd = detach(w), r, S, E, k, renormalize](const Tensor& grad) {
             Tensor gw = contiguous(grad);
             Tensor dg = Tensor::empty({S, E}, gw.dtype());
             dispatch_compute(gw.dtype(), "moe_gate_weights backward", [&](auto tag) {
               using T = decltype(tag);
               cpu::moe_gate_weights_backward<T>(
                   dg.host_data<T>(), gw.host_data<T>(), wd.host_data<T>(), g.host_data<T>(),
                   r.expert.host_data<int32_t>(), r.slot.host_data<int32_t>(), S, E, k, renormalize,
                   renorm_eps<T>());
             });
             return std::vector<Tensor>{dg};
           });
  }
  return w;
}

Tensor moe_dispatch(const Tensor& x, const MoeRouting& r) {
  if (auto d = mixed::result_dtype({&x}, "moe_dispatch"))
    return mixed::down(moe_dispatch(mixed::up(x), r), *d);
  check_routing("moe_dispatch", r);
  MS_CHECK(x.dim() == 2 && x.shape()[0] == r.tokens, "moe_dispatch: x must be (", r.tokens,
           ", C) as the routing's tokens, got ", shape_str(x.shape()));
  const int64_t S = r.tokens, E = r.experts, k = r.k, cap = r.capacity, C = x.shape()[1];
  Tensor xc = contiguous(detach(x));
  Tensor buffer = Tensor::empty({E, cap, C}, xc.dtype());  // (E, capacity, C)
  if (xc.device() != Device::CPU) cuda_kernels_planned("moe_dispatch");
  dispatch_compute(xc.dtype(), "moe_dispatch", [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_dispatch_forward<T>(buffer.host_data<T>(), xc.host_data<T>(),
                                 r.expert.host_data<int32_t>(), r.slot.host_data<int32_t>(), S, k,
                                 cap, E, C);
  });
  if (needs_grad({&x})) {
    record(buffer, "moe_dispatch", {x}, [r, S, k, cap, C](const Tensor& grad) {
      Tensor gb = contiguous(grad);
      Tensor dx = Tensor::empty({S, C}, gb.dtype());
      dispatch_compute(gb.dtype(), "moe_dispatch backward", [&](auto tag) {
        using T = decltype(tag);
        cpu::moe_dispatch_backward<T>(dx.host_data<T>(), gb.host_data<T>(),
                                      r.expert.host_data<int32_t>(), r.slot.host_data<int32_t>(), S,
                                      k, cap, C);
      });
      return std::vector<Tensor>{dx};
    });
  }
  return buffer;
}

Tensor moe_combine(const Tensor& y, const Tensor& weights, const MoeRouting& r) {
  if (auto d = mixed::result_dtype({&y, &weights}, "moe_combine"))
    return mixed::down(moe_combine(mixed::up(y), mixed::up(weights), r), *d);
  check_routing("moe_combine", r);
  const int64_t S = r.tokens, E = r.experts, k = r.k, cap = r.capacity;
  MS_CHECK(y.dim() == 3 && y.shape()[0] == E && y.shape()[1] == cap,
           "moe_combine: expert outputs must be (", E, ", ", cap, ", C), got ",
           shape_str(y.shape()));
  MS_CHECK(weights.dim() == 2 && weights.shape()[0] == S && weights.shape()[1] == k,
           "moe_combine: weights must be (", S, ", ", k, "), got ", shape_str(weights.shape()));
  MS_CHECK(y.dtype() == weights.dtype(), "moe_combine: expert outputs (", dtype_name(y.dtype()),
           ") and weights (", dtype_name(weights.dtype()), ") differ in dtype");
  const int64_t C = y.shape()[2];
  Tensor yc = contiguous(detach(y)), wc = contiguous(detach(weights));
  Tensor out = Tensor::empty({S, C}, yc.dtype());  // (S, C)
  if (yc.device() != Device::CPU) cuda_kernels_planned("moe_combine");
  dispatch_compute(yc.dtype(), "moe_combine", [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_combine_forward<T>(out.host_data<T>(), yc.host_data<T>(), wc.host_data<T>(),
                                r.expert.host_data<int32_t>(), r.slot.host_data<int32_t>(), S, k,
                                cap, C);
  });
  if (needs_grad({&y, &weights})) {
    record(out, "moe_combine", {y, weights}, [yc, wc, r, S, E, k, cap, C](const Tensor& grad) {
      Tensor go = contiguous(grad);
      Tensor dy = Tensor::empty({E, cap, C}, go.dtype());
      Tensor dw = Tensor::empty({S, k}, go.dtype());
      dispatch_compute(go.dtype(), "moe_combine backward", [&](auto tag) {
        using T = decltype(tag);
        cpu::moe_combine_backward<T>(dy.host_data<T>(), dw.host_data<T>(), go.host_data<T>(),
                                     yc.host_data<T>(), wc.host_data<T>(),
                                     r.expert.host_data<int32_t>(), r.slot.host_data<int32_t>(), S,
                                     k, cap, E, C);
      });
      return std::vector<Tensor>{dy, dw};
    });
  }
  return out;
}

}  // namespace ms
