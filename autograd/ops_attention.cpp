// Fused causal self-attention and dropout.
#include <cstring>

#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/device_kernels.h"

namespace ms {

namespace {

// The fused op; `mask` (B, NH, T, T) or null for no attention dropout.
Tensor attention_with_mask(const Tensor& qkv, int64_t n_head,
                           const std::shared_ptr<const DropoutMask>& mask) {
  // Scores and softmax in f32; only the (B, T, C) output is rounded (mixed.h).
  if (auto d = mixed::result_dtype({&qkv}, "causal_attention"))
    return mixed::recompute_in_f32("causal_attention", {qkv}, *d, [n_head, mask](const auto& t) {
      return attention_with_mask(t[0], n_head, mask);  // the same mask when recomputed
    });
  MS_CHECK(is_compute_dtype(qkv.dtype()) && qkv.dim() == 3 && qkv.shape()[2] % 3 == 0,
           "causal_attention: qkv must be (B, T, 3C) f32/f64, got ", shape_str(qkv.shape()), " ",
           dtype_name(qkv.dtype()));
  int64_t B = qkv.shape()[0], T = qkv.shape()[1], C = qkv.shape()[2] / 3;
  MS_CHECK(n_head > 0 && C % n_head == 0, "causal_attention: n_embd ", C,
           " is not divisible by n_head ", n_head);
  const Shape mask_shape{B, n_head, T, T};
  MS_CHECK(!mask || mask->shape == mask_shape, "causal_attention: dropout mask ",
           mask ? shape_str(mask->shape) : "",
           " must be (B, n_head, T, T) = ", shape_str(mask_shape));
  const Device d = qkv.device();
  MS_CHECK(!mask || mask->device() == d, "causal_attention: the dropout mask is on ",
           mask ? device_name(mask->device()) : "", " but qkv on ", device_name(d),
           "; move it with dropout_mask_to()");
  const double keep_scale = mask ? 1.0 / (1.0 - mask->p) : 1.0;
  Tensor x = contiguous(detach(qkv));
  Tensor out = Tensor::empty({B, T, C}, qkv.dtype(), d);
  Tensor lse = Tensor::empty({B, n_head, T}, qkv.dtype(), d);  // (B, NH, T): all backward keeps
  {
    KernelScope scope("causal_attention", d);
    const uint8_t* keep = mask ? mask->device_data() : nullptr;
    dispatch_compute(qkv.dtype(), "causal_attention", [&](auto tag) {
      using D = decltype(tag);
      dk::flash_attention_forward<D>(d, out.device_data<D>(), lse.device_data<D>(),
                                     x.device_data<D>(), B, T, C, n_head, keep, D(keep_scale));
    });
  }
  if (needs_grad({&qkv})) {
    // Saved: q|k|v, the output (a detached handle: a node holding its own
    // output is a reference cycle), the log-sum-exp and the 1-byte mask;
    // backward recomputes P block by block (flash_attention.h).
    record(out, "causal_attention", {qkv},
           [x, o = detach(out), lse, mask, keep_scale, B, T, C, n_head](const Tensor& g) {
             Tensor gc = contiguous(g);
             const Device d = op_device("causal_attention backward", {&gc, &x});
             Tensor dqkv = Tensor::empty({B, T, 3 * C}, x.dtype(), d);
             KernelScope scope("causal_attention backward", d);
             dispatch_compute(x.dtype(), "causal_attention backward", [&](auto tag) {
               using D = decltype(tag);
               dk::flash_attention_backward<D>(d, dqkv.device_data<D>(), gc.device_data<D>(),
                                               x.device_data<D>(), o.device_data<D>(),
                                               lse.device_data<D>(), B, T, C, n_head,
                                               mask ? mask->device_data() : nullptr, D(keep_scale));
             });
             return std::vector<Tensor>{dqkv};
           });
  }
  return out;
}

}  // namespace

Tensor causal_attention(const Tensor& qkv, int64_t n_head) {
  return attention_with_mask(qkv, n_head, nullptr);
}

Tensor causal_attention(const Tensor& qkv, int64_t n_head, const DropoutMask& attn_mask) {
  return attention_with_mask(
      qkv, n_head, std::make_shared<const DropoutMask>(dropout_mask_to(attn_mask, qkv.device())));
}

Tensor causal_attention(const Tensor& qkv, int64_t n_head, double attn_p, Generator& gen) {
  MS_CHECK(attn_p >= 0 && attn_p < 1, "causal_attention: attention dropout ", attn_p,
           " must be in [0, 1)");
  if (attn_p == 0) return causal_attention(qkv, n_head);
  MS_CHECK(qkv.dim() == 3, "causal_attention: qkv must be (B, T, 3C), got ",
           shape_str(qkv.shape()));
  const int64_t B = qkv.shape()[0], T = qkv.shape()[1];
  return attention_with_mask(qkv, n_head,
                             std::make_shared<const DropoutMask>(dropout_mask_to(
                                 draw_dropout_mask({B, n_head, T, T}, attn_p, gen), qkv.device())));
}

uint8_t* DropoutMask::host_data(std::source_location caller) const {
  return static_cast<uint8_t*>(host_bytes(*bytes, caller));
}
const uint8_t* DropoutMask::device_data(std::source_location caller) const {
  return static_cast<const uint8_t*>(device_bytes(*bytes, caller));
}

DropoutMask draw_dropout_mask(const Shape& shape, double p, Generator& gen) {
  MS_CHECK(p >= 0 && p < 1, "dropout: probability ", p, " must be in [0, 1)");
  DropoutMask m{std::make_shared<Storage>(size_t(shape_numel(shape)), Device::CPU), shape, p};
  auto* keep = m.host_data();
  for (int64_t i = 0; i < m.numel(); ++i) keep[i] = gen.uniform() < p ? 0 : 1;
  return m;
}

DropoutMask slice_dropout_mask(const DropoutMask& m, int64_t start, int64_t n) {
  MS_CHECK(m.shape.size() >= 2 && start >= 0 && n >= 0 && start + n <= m.shape[1],
           "slice_dropout_mask: positions [", start, ", ", start + n, ") of a mask ",
           shape_str(m.shape));
  Shape shape = m.shape;
  shape[1] = n;
  const int64_t outer = m.shape[0], inner = m.numel() / (outer * m.shape[1]);
  // A host slice: pipeline and sequence parallelism cut the host-drawn mask
  // before moving each part to its device.
  DropoutMask s{std::make_shared<Storage>(size_t(shape_numel(shape)), Device::CPU), shape, m.p};
  uint8_t* dst = s.host_data();
  const uint8_t* src = m.host_data();
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + o * n * inner, src + (o * m.shape[1] + start) * inner, size_t(n * inner));
  return s;
}

DropoutMask dropout_mask_to(const DropoutMask& m, Device device) {
  if (m.device() == device) return m;
  return DropoutMask{storage_to(*m.bytes, device), m.shape, m.p};
}

namespace {

// out = x ∘ keep · scale, for the forward and (on the gradient) the backward.
Tensor masked_scale(const Tensor& x, const std::shared_ptr<const DropoutMask>& m) {
  const Device d = x.device();
  MS_CHECK(m->device() == d, "dropout: the mask is on ", device_name(m->device()), " but x on ",
           device_name(d), "; move it with dropout_mask_to()");
  Tensor xc = contiguous(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), d);
  const double scale = 1.0 / (1.0 - m->p);
  KernelScope scope("dropout", d);
  dispatch_compute(x.dtype(), "dropout", [&](auto tag) {
    using D = decltype(tag);
    dk::dropout_apply<D>(d, out.device_data<D>(), xc.device_data<D>(), m->device_data(), D(scale),
                         x.numel());
  });
  return out;
}

}  // namespace

static Tensor apply_dropout_mask_unplaced(const Tensor& x, const DropoutMask& mask) {
  MS_CHECK(x.shape() == mask.shape, "dropout: input ", shape_str(x.shape()), " but mask ",
           shape_str(mask.shape));
  // The kept elements' 1/(1-p) is applied in f32: rounded to 16-bit first it
  // would no longer be the inverse of the keep rate (mixed.h).
  if (auto d = mixed::result_dtype({&x}, "dropout"))
    return mixed::down(apply_dropout_mask(mixed::up(x), mask), *d);
  MS_CHECK(is_compute_dtype(x.dtype()), "dropout: input must be f32/f64, got ",
           dtype_name(x.dtype()));
  // A host-drawn mask moves to x's device once, here; backward reuses it there.
  auto m = std::make_shared<const DropoutMask>(dropout_mask_to(mask, x.device()));
  Tensor out = masked_scale(detach(x), m);
  if (needs_grad({&x}))
    record(out, "dropout", {x},
           [m](const Tensor& g) { return std::vector<Tensor>{masked_scale(g, m)}; });
  return out;
}

// Dropout scales each element by 0 or 1/(1-p): linear, so a partial input
// stays partial — provided every rank of the group draws the same mask, or
// the masked shares no longer sum to the masked whole. Our tp and sp models
// apply dropout only after the reduction, so none relies on this.
Tensor apply_dropout_mask(const Tensor& x, const DropoutMask& mask) {
  const Placements placed = keep_linear("dropout", x);
  return with_placements(apply_dropout_mask_unplaced(x, mask), placed);
}

Tensor dropout(const Tensor& x, double p, Generator& gen) {
  MS_CHECK(p >= 0 && p < 1, "dropout: probability ", p, " must be in [0, 1)");
  if (p == 0) return x;
  return apply_dropout_mask(x, draw_dropout_mask(x.shape(), p, gen));
}

}  // namespace ms
