// The model's fused ops: each forward makes its one device switch, calls one
// kernel of its family (tensor/cpu/<family>.h) and records a backward that
// calls the partner kernel, on the device the forward ran on.
#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/cpu/cross_entropy.h"
#include "tensor/cpu/embedding.h"
#include "tensor/cpu/gelu.h"
#include "tensor/cpu/layernorm.h"
#include "tensor/cpu/softmax.h"

namespace ms {

namespace {

void check_compute(const char* op, const Tensor& t, const char* what) {
  MS_CHECK(is_compute_dtype(t.dtype()), op, ": ", what, " has dtype ", dtype_name(t.dtype()),
           " (shape ", shape_str(t.shape()), "); expected f32 or f64");
}

// Row-wise ops along `dim`: move it last so every row is contiguous.
Tensor rows_last(const Tensor& t, int64_t dim) {
  return contiguous(detach(dim == t.dim() - 1 ? t : transpose(t, dim, -1)));
}
Tensor restore_dim(const Tensor& t, int64_t dim) {
  return dim == t.dim() - 1 ? t : contiguous(transpose(t, dim, -1));
}

// Shared shape of softmax and log_softmax: forward kernel, backward kernel.
template <typename Fwd, typename Bwd>
Tensor rowwise_softmax(const char* op, const Tensor& t, int64_t dim, Fwd fwd, Bwd bwd) {
  check_compute(op, t, "input");
  MS_CHECK(t.dim() >= 1, op, ": needs at least 1-D input, got a scalar");
  dim = wrap_dim(dim, t.dim(), op);
  Tensor x = rows_last(t, dim);
  int64_t C = x.shape().back(), N = C == 0 ? 0 : x.numel() / C;
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if (x.device() == Device::CPU) {
    dispatch_compute(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      fwd(y.host_data<T>(), x.host_data<T>(), N, C);
    });
  } else {
    cuda_kernels_planned(op);
  }
  Tensor out = restore_dim(y, dim);
  if (needs_grad({&t})) {
    // Save a detached handle: `out` may be `y` itself, and a Node whose closure
    // holds its own output is a reference cycle that never frees.
    record(out, op, {t}, [y = detach(y), dim, N, C, op, bwd](const Tensor& g) {
      Tensor gy = rows_last(g, dim);
      Tensor gx = Tensor::empty(gy.shape(), gy.dtype());
      dispatch_compute(gy.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        bwd(gx.host_data<T>(), gy.host_data<T>(), y.host_data<T>(), N, C);
      });
      return std::vector<Tensor>{restore_dim(gx, dim)};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& t, int64_t dim) {
  if (auto d = mixed::result_dtype({&t}, "softmax")) return mixed::down(softmax(mixed::up(t), dim), *d);
  return rowwise_softmax(
      "softmax", t, dim,
      [](auto* y, const auto* x, int64_t N, int64_t C) { cpu::softmax_forward(y, x, N, C); },
      [](auto* dx, const auto* dy, const auto* y, int64_t N, int64_t C) {
        cpu::softmax_backward(dx, dy, y, N, C);
      });
}

Tensor log_softmax(const Tensor& t, int64_t dim) {
  if (auto d = mixed::result_dtype({&t}, "log_softmax"))
    return mixed::down(log_softmax(mixed::up(t), dim), *d);
  return rowwise_softmax(
      "log_softmax", t, dim,
      [](auto* y, const auto* x, int64_t N, int64_t C) { cpu::log_softmax_forward(y, x, N, C); },
      [](auto* dx, const auto* dy, const auto* y, int64_t N, int64_t C) {
        cpu::log_softmax_backward(dx, dy, y, N, C);
      });
}

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  // Mean and rstd are computed and kept in f32 (mixed.h).
  if (auto d = mixed::result_dtype({&x, &weight, &bias}, "layernorm"))
    return mixed::recompute_in_f32("layernorm", {x, weight, bias}, *d, [eps](const auto& t) {
      return layernorm(t[0], t[1], t[2], eps);
    });
  check_compute("layernorm", x, "input");
  MS_CHECK(x.dim() >= 1, "layernorm: needs at least 1-D input");
  int64_t C = x.shape().back(), N = C == 0 ? 0 : x.numel() / C;
  MS_CHECK(weight.shape() == Shape{C} && bias.shape() == Shape{C} && weight.dtype() == x.dtype() &&
               bias.dtype() == x.dtype(),
           "layernorm: weight ", shape_str(weight.shape()), " and bias ", shape_str(bias.shape()),
           " must both be [", C, "] ", dtype_name(x.dtype()), " for input ", shape_str(x.shape()));
  Tensor xc = contiguous(detach(x));
  Tensor wc = contiguous(detach(weight)), bc = contiguous(detach(bias));
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty({N}, x.dtype()), rstd = Tensor::empty({N}, x.dtype());  // (N)
  if (x.device() == Device::CPU) {
    dispatch_compute(x.dtype(), "layernorm", [&](auto tag) {
      using T = decltype(tag);
      cpu::layernorm_forward<T>(out.host_data<T>(), mean.host_data<T>(), rstd.host_data<T>(), xc.host_data<T>(),
                                wc.host_data<T>(), bc.host_data<T>(), N, C, eps);
    });
  } else {
    cuda_kernels_planned("layernorm");
  }
  if (needs_grad({&x, &weight, &bias})) {
    record(out, "layernorm", {x, weight, bias}, [xc, wc, mean, rstd, N, C](const Tensor& g) {
      Tensor gc = contiguous(g);
      Tensor dx = Tensor::empty(xc.shape(), xc.dtype());
      Tensor dw = zeros({C}, xc.dtype()), db = zeros({C}, xc.dtype());
      dispatch_compute(xc.dtype(), "layernorm backward", [&](auto tag) {
        using T = decltype(tag);
        cpu::layernorm_backward<T>(dx.host_data<T>(), dw.host_data<T>(), db.host_data<T>(), gc.host_data<T>(),
                                   xc.host_data<T>(), wc.host_data<T>(), mean.host_data<T>(), rstd.host_data<T>(), N,
                                   C);
      });
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return out;
}

Tensor gelu(const Tensor& x) {
  if (auto d = mixed::result_dtype({&x}, "gelu"))
    return mixed::recompute_in_f32("gelu", {x}, *d, [](const auto& t) { return gelu(t[0]); });
  check_compute("gelu", x, "input");
  Tensor xc = contiguous(detach(x));
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (x.device() == Device::CPU) {
    dispatch_compute(x.dtype(), "gelu", [&](auto tag) {
      using T = decltype(tag);
      cpu::gelu_forward<T>(out.host_data<T>(), xc.host_data<T>(), xc.numel());
    });
  } else {
    cuda_kernels_planned("gelu");
  }
  if (needs_grad({&x})) {
    record(out, "gelu", {x}, [xc](const Tensor& g) {
      Tensor gc = contiguous(g);
      Tensor dx = Tensor::empty(xc.shape(), xc.dtype());
      dispatch_compute(xc.dtype(), "gelu backward", [&](auto tag) {
        using T = decltype(tag);
        cpu::gelu_backward<T>(dx.host_data<T>(), gc.host_data<T>(), xc.host_data<T>(), xc.numel());
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

// Checks every index is in [0, limit): an out-of-range token id must be an
// error, not a read past the table.
static Tensor checked_indices(const char* op, const Tensor& idx, int64_t limit, const char* what) {
  MS_CHECK(idx.dtype() == DType::I32, op, ": ", what, " must be i32, got ", dtype_name(idx.dtype()),
           " ", shape_str(idx.shape()));
  Tensor c = contiguous(idx);
  const int32_t* p = c.host_data<int32_t>();
  for (int64_t i = 0; i < c.numel(); ++i)
    MS_CHECK(p[i] >= 0 && p[i] < limit, op, ": ", what, " value ", p[i], " at position ", i,
             " is out of range [0, ", limit, ")");
  return c;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  if (auto d = mixed::result_dtype({&weight}, "embedding"))
    return mixed::down(embedding(mixed::up(weight), indices), *d);
  check_compute("embedding", weight, "weight");
  MS_CHECK(weight.dim() == 2, "embedding: weight must be (V, C), got ", shape_str(weight.shape()));
  int64_t V = weight.shape()[0], C = weight.shape()[1];
  Tensor idx = checked_indices("embedding", indices, V, "index");
  Tensor wc = contiguous(detach(weight));
  Shape out_shape = indices.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, weight.dtype());  // (indices..., C)
  int64_t N = idx.numel();
  if (weight.device() == Device::CPU) {
    dispatch_compute(weight.dtype(), "embedding", [&](auto tag) {
      using T = decltype(tag);
      cpu::embedding_forward<T>(out.host_data<T>(), wc.host_data<T>(), idx.host_data<int32_t>(), N, C);
    });
  } else {
    cuda_kernels_planned("embedding");
  }
  if (needs_grad({&weight})) {
    record(out, "embedding", {weight, Tensor()}, [idx, V, C, N](const Tensor& g) {
      Tensor gc = contiguous(g);
      Tensor dw = zeros({V, C}, gc.dtype());
      dispatch_compute(gc.dtype(), "embedding backward", [&](auto tag) {
        using T = decltype(tag);
        cpu::embedding_backward<T>(dw.host_data<T>(), gc.host_data<T>(), idx.host_data<int32_t>(), N, C);
      });
      return std::vector<Tensor>{dw, Tensor()};
    });
  }
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets) {
  // 16-bit logits: softmax over the vocabulary and the loss stay f32 (mixed.h);
  // the logits' gradient is rounded to 16-bit by the cast's backward.
  if (mixed::result_dtype({&logits}, "cross_entropy")) return cross_entropy(mixed::up(logits), targets);
  check_compute("cross_entropy", logits, "logits");
  MS_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.shape()[0] == logits.shape()[0],
           "cross_entropy: logits must be (N, V) and targets (N), got ", shape_str(logits.shape()),
           " and ", shape_str(targets.shape()));
  int64_t N = logits.shape()[0], V = logits.shape()[1];
  MS_CHECK(N > 0, "cross_entropy: no rows to average over");
  Tensor tc = checked_indices("cross_entropy", targets, V, "target");
  Tensor lc = contiguous(detach(logits));
  Tensor lse = Tensor::empty({N}, logits.dtype());  // (N)
  double loss = 0;
  if (logits.device() == Device::CPU) {
    loss = dispatch_compute(logits.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      return cpu::cross_entropy_forward<T>(lse.host_data<T>(), lc.host_data<T>(), tc.host_data<int32_t>(), N, V);
    });
  } else {
    cuda_kernels_planned("cross_entropy");
  }
  Tensor out = full({}, loss, logits.dtype());
  if (needs_grad({&logits})) {
    record(out, "cross_entropy", {logits, Tensor()}, [lc, lse, tc, N, V](const Tensor& g) {
      Tensor d = Tensor::empty({N, V}, lc.dtype());
      double dloss = g.item();
      dispatch_compute(lc.dtype(), "cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        cpu::cross_entropy_backward<T>(d.host_data<T>(), lc.host_data<T>(), lse.host_data<T>(), tc.host_data<int32_t>(),
                                       dloss, N, V);
      });
      return std::vector<Tensor>{d, Tensor()};
    });
  }
  return out;
}

}  // namespace ms
