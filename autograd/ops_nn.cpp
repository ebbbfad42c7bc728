// The model's fused ops: each forward finds its device once, calls one kernel
// of its family through the device switch (tensor/device_kernels.h) and
// records a backward that calls the partner kernel on the same device.
#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"

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
  const Device d = x.device();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), d);
  {
    KernelScope scope(op, d);
    dispatch_compute(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      fwd(d, y.device_data<T>(), x.device_data<T>(), N, C);
    });
  }
  Tensor out = restore_dim(y, dim);
  if (needs_grad({&t})) {
    // Save a detached handle: `out` may be `y` itself, and a Node whose closure
    // holds its own output is a reference cycle that never frees.
    record(out, op, {t}, [y = detach(y), dim, N, C, op, bwd](const Tensor& g) {
      Tensor gy = rows_last(g, dim);
      const Device d = op_device(op, {&gy, &y});
      Tensor gx = Tensor::empty(gy.shape(), gy.dtype(), d);
      KernelScope scope(op, d);
      dispatch_compute(gy.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        bwd(d, gx.device_data<T>(), gy.device_data<T>(), y.device_data<T>(), N, C);
      });
      return std::vector<Tensor>{restore_dim(gx, dim)};
    });
  }
  return out;
}

}  // namespace

static Tensor softmax_unplaced(const Tensor& t, int64_t dim) {
  if (auto d = mixed::result_dtype({&t}, "softmax"))
    return mixed::down(softmax(mixed::up(t), dim), *d);
  return rowwise_softmax(
      "softmax", t, dim,
      [](Device d, auto* y, const auto* x, int64_t N, int64_t C) {
        dk::softmax_forward(d, y, x, N, C);
      },
      [](Device d, auto* dx, const auto* dy, const auto* y, int64_t N, int64_t C) {
        dk::softmax_backward(d, dx, dy, y, N, C);
      });
}

Tensor softmax(const Tensor& t, int64_t dim) {
  const Placements placed = keep_rowwise("softmax", t, dim);
  return with_placements(softmax_unplaced(t, dim), placed);
}

static Tensor log_softmax_unplaced(const Tensor& t, int64_t dim) {
  if (auto d = mixed::result_dtype({&t}, "log_softmax"))
    return mixed::down(log_softmax(mixed::up(t), dim), *d);
  return rowwise_softmax(
      "log_softmax", t, dim,
      [](Device d, auto* y, const auto* x, int64_t N, int64_t C) {
        dk::log_softmax_forward(d, y, x, N, C);
      },
      [](Device d, auto* dx, const auto* dy, const auto* y, int64_t N, int64_t C) {
        dk::log_softmax_backward(d, dx, dy, y, N, C);
      });
}

Tensor log_softmax(const Tensor& t, int64_t dim) {
  const Placements placed = keep_rowwise("log_softmax", t, dim);
  return with_placements(log_softmax_unplaced(t, dim), placed);
}

static Tensor layernorm_unplaced(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                 double eps) {
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
  const Device d = op_device("layernorm", {&x, &weight, &bias});
  Tensor xc = contiguous(detach(x));
  Tensor wc = contiguous(detach(weight)), bc = contiguous(detach(bias));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), d);
  Tensor mean = Tensor::empty({N}, x.dtype(), d), rstd = Tensor::empty({N}, x.dtype(), d);  // (N)
  {
    KernelScope scope("layernorm", d);
    dispatch_compute(x.dtype(), "layernorm", [&](auto tag) {
      using T = decltype(tag);
      dk::layernorm_forward<T>(d, out.device_data<T>(), mean.device_data<T>(),
                               rstd.device_data<T>(), xc.device_data<T>(), wc.device_data<T>(),
                               bc.device_data<T>(), N, C, eps);
    });
  }
  if (needs_grad({&x, &weight, &bias})) {
    record(out, "layernorm", {x, weight, bias}, [xc, wc, mean, rstd, N, C](const Tensor& g) {
      Tensor gc = contiguous(g);
      const Device d = op_device("layernorm backward", {&gc, &xc});
      Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), d);
      Tensor dw = zeros({C}, xc.dtype(), d), db = zeros({C}, xc.dtype(), d);  // accumulated into
      KernelScope scope("layernorm backward", d);
      dispatch_compute(xc.dtype(), "layernorm backward", [&](auto tag) {
        using T = decltype(tag);
        dk::layernorm_backward<T>(d, dx.device_data<T>(), dw.device_data<T>(), db.device_data<T>(),
                                  gc.device_data<T>(), xc.device_data<T>(), wc.device_data<T>(),
                                  mean.device_data<T>(), rstd.device_data<T>(), N, C);
      });
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return out;
}

// The weight and bias act per channel, so the output lives as x does.
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const Placements placed = keep_rowwise("layernorm", x, -1);
  return with_placements(layernorm_unplaced(x, weight, bias, eps), placed);
}

static Tensor gelu_unplaced(const Tensor& x) {
  if (auto d = mixed::result_dtype({&x}, "gelu"))
    return mixed::recompute_in_f32("gelu", {x}, *d, [](const auto& t) { return gelu(t[0]); });
  check_compute("gelu", x, "input");
  const Device d = x.device();
  Tensor xc = contiguous(detach(x));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), d);
  {
    KernelScope scope("gelu", d);
    dispatch_compute(x.dtype(), "gelu", [&](auto tag) {
      using T = decltype(tag);
      dk::gelu_forward<T>(d, out.device_data<T>(), xc.device_data<T>(), xc.numel());
    });
  }
  if (needs_grad({&x})) {
    record(out, "gelu", {x}, [xc](const Tensor& g) {
      Tensor gc = contiguous(g);
      const Device d = op_device("gelu backward", {&gc, &xc});
      Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), d);
      KernelScope scope("gelu backward", d);
      dispatch_compute(xc.dtype(), "gelu backward", [&](auto tag) {
        using T = decltype(tag);
        dk::gelu_backward<T>(d, dx.device_data<T>(), gc.device_data<T>(), xc.device_data<T>(),
                             xc.numel());
      });
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

Tensor gelu(const Tensor& x) {
  const Placements placed = keep_nonlinear("gelu", x);
  return with_placements(gelu_unplaced(x), placed);
}

// Checks every index is in [0, limit): an out-of-range token id must be an
// error, not a read past the table. Device indices are checked on a host copy
// (B·T ints a step), where PyTorch's kernels raise a device-side assert, which
// a CUDA context does not survive.
static Tensor checked_indices(const char* op, const Tensor& idx, int64_t limit, const char* what) {
  MS_CHECK(idx.dtype() == DType::I32, op, ": ", what, " must be i32, got ", dtype_name(idx.dtype()),
           " ", shape_str(idx.shape()));
  Tensor c = contiguous(idx);
  const Tensor host = c.to(Device::CPU);
  const int32_t* p = host.host_data<int32_t>();
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
  const Device d = op_device("embedding", {&weight, &indices});
  Tensor idx = checked_indices("embedding", indices, V, "index");
  Tensor wc = contiguous(detach(weight));
  Shape out_shape = indices.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), d);  // (indices..., C)
  int64_t N = idx.numel();
  {
    KernelScope scope("embedding", d);
    dispatch_compute(weight.dtype(), "embedding", [&](auto tag) {
      using T = decltype(tag);
      dk::embedding_forward<T>(d, out.device_data<T>(), wc.device_data<T>(),
                               idx.device_data<int32_t>(), N, C);
    });
  }
  if (needs_grad({&weight})) {
    record(out, "embedding", {weight, Tensor()}, [idx, V, C, N](const Tensor& g) {
      Tensor gc = contiguous(g);
      const Device d = op_device("embedding backward", {&gc, &idx});
      Tensor dw = zeros({V, C}, gc.dtype(), d);  // scatter-added into
      KernelScope scope("embedding backward", d);
      dispatch_compute(gc.dtype(), "embedding backward", [&](auto tag) {
        using T = decltype(tag);
        dk::embedding_backward<T>(d, dw.device_data<T>(), gc.device_data<T>(),
                                  idx.device_data<int32_t>(), N, C);
      });
      return std::vector<Tensor>{dw, Tensor()};
    });
  }
  return out;
}

static Tensor cross_entropy_unplaced(const Tensor& logits, const Tensor& targets) {
  // 16-bit logits: softmax over the vocabulary and the loss stay f32 (mixed.h);
  // the logits' gradient is rounded to 16-bit by the cast's backward.
  if (mixed::result_dtype({&logits}, "cross_entropy"))
    return cross_entropy(mixed::up(logits), targets);
  check_compute("cross_entropy", logits, "logits");
  MS_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.shape()[0] == logits.shape()[0],
           "cross_entropy: logits must be (N, V) and targets (N), got ", shape_str(logits.shape()),
           " and ", shape_str(targets.shape()));
  int64_t N = logits.shape()[0], V = logits.shape()[1];
  MS_CHECK(N > 0, "cross_entropy: no rows to average over");
  const Device dev = op_device("cross_entropy", {&logits, &targets});
  Tensor tc = checked_indices("cross_entropy", targets, V, "target");
  Tensor lc = contiguous(detach(logits));
  Tensor lse = Tensor::empty({N}, logits.dtype(), dev);  // (N)
  double loss = 0;
  {
    KernelScope scope("cross_entropy", dev);
    loss = dispatch_compute(logits.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      return dk::cross_entropy_forward<T>(dev, lse.device_data<T>(), lc.device_data<T>(),
                                          tc.device_data<int32_t>(), N, V);
    });
  }
  Tensor out = full({}, loss, logits.dtype(), dev);
  if (needs_grad({&logits})) {
    record(out, "cross_entropy", {logits, Tensor()}, [lc, lse, tc, N, V](const Tensor& g) {
      const Device dev = op_device("cross_entropy backward", {&g, &lc});
      Tensor d = Tensor::empty({N, V}, lc.dtype(), dev);
      double dloss = g.item();  // the kernel takes the scalar by value (one D2H copy)
      KernelScope scope("cross_entropy backward", dev);
      dispatch_compute(lc.dtype(), "cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        dk::cross_entropy_backward<T>(dev, d.device_data<T>(), lc.device_data<T>(),
                                      lse.device_data<T>(), tc.device_data<int32_t>(), dloss, N, V);
      });
      return std::vector<Tensor>{d, Tensor()};
    });
  }
  return out;
}

// A loss over the classes of a sharded or partial logit row would be wrong on
// every rank; vocab-parallel cross-entropy (parallel/tp/cross_entropy.h) is
// the sharded form.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets) {
  keep_rowwise("cross_entropy", logits, -1);
  return cross_entropy_unplaced(logits, targets);
}

}  // namespace ms
