// matmul and linear, on the hand-written GEMM (tensor/cpu/gemm.h). Transposed
// operands are passed to GEMM as flags, never copied, so backward's
// dA = dC·Bᵀ and dB = Aᵀ·dC run at forward speed.
#include <algorithm>
#include <tuple>
#include <utility>

#include "autograd/grad_mode.h"
#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"

namespace ms {

namespace {

// A 2-D operand as GEMM sees it: row-major (trans=false) or column-major
// (trans=true, a transposed view) with leading dimension ld; ld 0 when the
// strides are neither (the caller makes it contiguous first).
struct GemmLayout {
  int64_t ld;
  bool trans;
};

GemmLayout gemm_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1) {
  if (s1 == 1 || cols == 1) return {rows == 1 ? std::max<int64_t>(cols, 1) : s0, false};
  if (s0 == 1 || rows == 1) return {cols == 1 ? std::max<int64_t>(rows, 1) : s1, true};
  return {0, false};
}

// C (M, N) [+]= A (M, K) · B (K, N) on device d; pa, pb, pc point at element
// [0, 0] of each (device pointers, taken before any OpenMP region), sa and sb
// are A's and B's strides, C is contiguous. f32 may add a bias row in the
// GEMM's epilogue; f64 callers put the bias into C first and pass beta = 1.
template <typename T>
void gemm_2d(Device d, const T* pa, const T* pb, T* pc, int64_t M, int64_t N, int64_t K,
             const Shape& sa, const Shape& sb, T beta, const T* bias = nullptr) {
  GemmLayout a = gemm_layout(M, K, sa[0], sa[1]);
  GemmLayout b = gemm_layout(K, N, sb[0], sb[1]);
  MS_ASSERT(a.ld > 0 && b.ld > 0, "gemm operands must be row- or column-major");
  if constexpr (std::is_same_v<T, float>) {
    if (bias) {
      dk::gemm_f32_bias(d, a.trans, b.trans, M, N, K, 1.0f, pa, a.ld, pb, b.ld, bias, pc, N);
    } else {
      dk::gemm_f32(d, a.trans, b.trans, M, N, K, 1.0f, pa, a.ld, pb, b.ld, beta, pc, N);
    }
  } else {
    MS_ASSERT(bias == nullptr, "f64 gemm takes its bias through C");
    dk::gemm_f64(d, a.trans, b.trans, M, N, K, 1.0, pa, a.ld, pb, b.ld, beta, pc, N);
  }
}

// Makes the last two dims GEMM-compatible (row- or column-major), copying only if needed.
Tensor gemm_ready(const Tensor& t) {
  int64_t d = t.dim();
  int64_t rows = t.shape()[d - 2], cols = t.shape()[d - 1];
  int64_t s0 = t.strides()[d - 2], s1 = t.strides()[d - 1];
  bool ok = s1 == 1 || cols == 1 || s0 == 1 || rows == 1;
  return ok ? t : contiguous(detach(t));
}

// out (batch..., M, N) = a (batch..., M, K) · b (batch..., K, N); both already gemm_ready.
Tensor batched_matmul(const Tensor& a, const Tensor& b) {
  int64_t d = a.dim();
  int64_t M = a.shape()[d - 2], K = a.shape()[d - 1], N = b.shape()[d - 1];
  Shape out_shape(a.shape().begin(), a.shape().end() - 2);
  int64_t batch = shape_numel(out_shape);
  out_shape.push_back(M);
  out_shape.push_back(N);
  const Device dev = op_device("matmul", {&a, &b});
  Tensor out = Tensor::empty(out_shape, a.dtype(), dev);
  Shape sa{a.strides()[d - 2], a.strides()[d - 1]}, sb{b.strides()[d - 2], b.strides()[d - 1]};
  auto batch_offset = [&](const Tensor& t, int64_t index) {
    int64_t off = 0;
    for (int64_t i = d - 3; i >= 0; --i) {
      off += (index % t.shape()[i]) * t.strides()[i];
      index /= t.shape()[i];
    }
    return off;
  };
  KernelScope scope("matmul", dev);
  dispatch_compute(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.device_data<T>();
    const T* pb = b.device_data<T>();
    T* pc = out.device_data<T>();
    // Many small GEMMs (attention's per-head products): one thread each on the
    // host; on the GPU one launch after another on the device's stream.
#pragma omp parallel for if (dev != Device::CUDA && batch > 1 && M * N * K < (1 << 22)) \
    schedule(static)
    for (int64_t i = 0; i < batch; ++i)
      gemm_2d<T>(dev, pa + batch_offset(a, i), pb + batch_offset(b, i), pc + i * M * N, M, N, K,
                 sa, sb, T(0));
  });
  return out;
}

void check_matmul(const char* op, const Tensor& a, const Tensor& b, int64_t k_b) {
  MS_CHECK(a.dtype() == b.dtype() && is_compute_dtype(a.dtype()), op, ": dtypes ",
           dtype_name(a.dtype()), " and ", dtype_name(b.dtype()), " must be equal and f32 or f64");
  MS_CHECK(a.dim() >= 2 && b.dim() >= 2, op, ": needs at least 2-D operands, got ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  MS_CHECK(a.shape().back() == k_b, op, ": inner dimensions differ: ", shape_str(a.shape()), " @ ",
           shape_str(b.shape()), " (", a.shape().back(), " vs ", k_b, ")");
}

// linear with a 16-bit input (autograd/mixed.h): the same f32 math as
// down(linear(up(x), up(w), up(b))), but the node keeps x and w in their own
// 16-bit storage and casts them up only inside backward, the way a GPU GEMM
// re-reads its 16-bit operands. linear's input is most of what a GPT block
// saves for backward (ln_1/ln_2 outputs, the attention output, the (B, T, 4C)
// GELU output), so this halves those bytes against an f32 copy.
Tensor linear_16bit(const Tensor& x, const Tensor& weight, const Tensor& bias, DType out) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = to(linear(mixed::up(x), mixed::up(weight), mixed::up(bias)), out);
  }
  if (needs_grad({&x, &weight, &bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad();
    const bool gb = bias.defined() && bias.requires_grad();
    const DType bias_dtype = bias.defined() ? bias.dtype() : out;
    record(y, "linear", {x, weight, bias},
           [x = detach(x), w = detach(weight), gx, gw, gb, bias_dtype](const Tensor& g) {
             const int64_t in = w.shape()[0], out_f = w.shape()[1];
             Tensor g2 = reshape(mixed::up(g), {-1, out_f});  // (N, out), f32
             Tensor dx, dw, db;
             if (gx)  // (N,out)·(out,in), rounded to x's dtype
               dx = to(reshape(matmul(g2, transpose(mixed::up(w), 0, 1)), x.shape()), x.dtype());
             if (gw)  // (in,N)·(N,out)
               dw = to(matmul(transpose(reshape(mixed::up(x), {-1, in}), 0, 1), g2), w.dtype());
             if (gb) db = to(sum(g2, {0}), bias_dtype);  // (out)
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return y;
}

// A Linear's weight and bias gradients from x2 (N, in) and g2 (N, out):
//   dW (in, out) = x2ᵀ · g2,  db (out) = Σ_rows g2
// f32 takes both from one GEMM, the column sums of g2 summed from its packed
// slivers (gemm_f32_colsum_b); f64 (gradient checks) runs the unfused twin.
std::pair<Tensor, Tensor> weight_and_bias_grad(const Tensor& x2, const Tensor& g2, bool gb) {
  if (x2.dtype() != DType::F32 || !gb) {
    Tensor dw = matmul(transpose(x2, 0, 1), g2);  // (in,N)·(N,out)
    return {dw, gb ? sum(g2, {0}) : Tensor()};    // (out)
  }
  Tensor gc = contiguous(g2);  // (N, out), the GEMM's B
  const int64_t N = gc.shape()[0], in = x2.shape()[1], out_f = gc.shape()[1];
  const Device dev = op_device("linear backward", {&x2, &gc});
  Tensor dw = Tensor::empty({in, out_f}, DType::F32, dev);  // (in, out)
  Tensor db = Tensor::empty({out_f}, DType::F32, dev);      // (out)
  const GemmLayout a = gemm_layout(in, N, x2.strides()[1], x2.strides()[0]);  // x2ᵀ (in, N)
  MS_ASSERT(a.ld > 0, "linear backward: x must be row- or column-major");
  KernelScope scope("linear backward", dev);
  dk::gemm_f32_colsum_b(dev, a.trans, false, in, out_f, N, 1.0f, x2.device_data<float>(), a.ld,
                        gc.device_data<float>(), out_f, 0.0f, dw.device_data<float>(), out_f,
                        db.device_data<float>());
  return {dw, db};
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (auto d = mixed::result_dtype({&a, &b}, "matmul"))
    return mixed::down(matmul(mixed::up(a), mixed::up(b)), *d);
  check_matmul("matmul", a, b, b.dim() >= 2 ? b.shape()[b.dim() - 2] : -1);
  Tensor out;
  if (b.dim() == 2 && a.dim() > 2) {
    // (..., M, K) @ (K, N): the batch is just more rows.
    Tensor a2 = reshape(detach(a), {-1, a.shape().back()});
    out = batched_matmul(gemm_ready(a2), gemm_ready(detach(b)));
    Shape shape(a.shape().begin(), a.shape().end() - 1);
    shape.push_back(b.shape().back());
    out = Tensor::make_view(out, shape, contiguous_strides(shape), 0);
  } else {
    Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    MS_CHECK(ba == bb, "matmul: batch dims differ: ", shape_str(a.shape()), " @ ",
             shape_str(b.shape()), " (batch ", shape_str(ba), " vs ", shape_str(bb), ")");
    out = batched_matmul(gemm_ready(detach(a)), gemm_ready(detach(b)));
  }
  if (needs_grad({&a, &b})) {
    bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "matmul", {a, b}, [a = detach(a), b = detach(b), ga, gb](const Tensor& g) {
      Tensor da, db;
      if (ga) da = matmul(g, transpose(b, -1, -2));  // (..., M, N)·(N, K)
      if (gb) {
        if (b.dim() == 2 && a.dim() > 2) {
          // Sum over the batch: flatten it into the rows of Aᵀ·dC.
          db = matmul(transpose(reshape(a, {-1, a.shape().back()}), 0, 1),
                      reshape(g, {-1, g.shape().back()}));
        } else {
          db = matmul(transpose(a, -1, -2), g);
        }
      }
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (auto d = mixed::result_dtype({&x, &weight, &bias}, "linear"))
    return linear_16bit(x, weight, bias, *d);
  check_matmul("linear", x, weight, weight.dim() == 2 ? weight.shape()[0] : -1);
  MS_CHECK(weight.dim() == 2, "linear: weight must be (in, out), got ", shape_str(weight.shape()));
  int64_t in = weight.shape()[0], out_f = weight.shape()[1];
  if (bias.defined()) {
    MS_CHECK(bias.shape() == Shape{out_f} && bias.dtype() == x.dtype(), "linear: bias ",
             shape_str(bias.shape()), " ", dtype_name(bias.dtype()), " must be [", out_f, "] ",
             dtype_name(x.dtype()), " for weight ", shape_str(weight.shape()));
  }
  const Device dev = op_device("linear", {&x, &weight, &bias});
  Tensor x2 = gemm_ready(reshape(detach(x), {-1, in}));  // (N, in)
  Tensor w = gemm_ready(detach(weight));                 // (in, out)
  int64_t N = x2.shape()[0];
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_f);
  Tensor out = Tensor::empty(out_shape, x.dtype(), dev);
  Tensor bc = bias.defined() ? contiguous(detach(bias)) : Tensor();
  KernelScope scope("linear", dev);
  dispatch_compute(x.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    Shape sx{x2.strides()[0], x2.strides()[1]}, sw{w.strides()[0], w.strides()[1]};
    const T* pb = nullptr;
    T beta = T(0);
    if (bc.defined()) {
      if constexpr (std::is_same_v<T, float>) {
        pb = bc.device_data<T>();  // added in the GEMM's epilogue
      } else {
        // f64 (gradient checks): every row of C starts at the bias, then accumulates.
        Tensor c2 = Tensor::make_view(out, {N, out_f}, {out_f, 1}, 0);
        dk::copy(dev, Tensor::make_view(bc, {N, out_f}, {0, 1}, bc.offset()), c2);
        beta = T(1);
      }
    }
    gemm_2d<T>(dev, x2.device_data<T>(), w.device_data<T>(), out.device_data<T>(), N, out_f, in,
               sx, sw, beta, pb);
  });
  if (needs_grad({&x, &weight, &bias})) {
    bool gx = x.requires_grad(), gw = weight.requires_grad();
    bool gbias = bias.defined() && bias.requires_grad();
    record(out, "linear", {x, weight, bias},
           [x2, w, x_shape = x.shape(), gx, gw, gbias, N, out_f](const Tensor& g) {
             Tensor g2 = reshape(g, {N, out_f});  // (N, out)
             Tensor dx, dw, db;
             if (gx) dx = reshape(matmul(g2, transpose(w, 0, 1)), x_shape);  // (N,out)·(out,in)
             if (gw) {
               std::tie(dw, db) = weight_and_bias_grad(x2, g2, gbias);
             } else if (gbias) {
               db = sum(g2, {0});  // (out)
             }
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return out;
}

}  // namespace ms
