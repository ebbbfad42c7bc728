// Blockwise attention with lse (see online_softmax.h): the serial model's head kernel
// (tensor/cpu/flash_attention.h) behind a device switch, one (batch, head) per OpenMP task.
#include "parallel/cp/online_softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/cpu/flash_attention.h"

namespace ms {

namespace {

// Element (b, t, c) of a (B, T, W) tensor whose last dim is contiguous.
template <typename D>
struct Rows {
  D* p;
  int64_t sb, st;
  D* row(int64_t b, int64_t t) const { return p + b * sb + t * st; }
};

template <typename D>
Rows<D> rows(const Tensor& t, const char* op) {
  MS_CHECK(t.dim() == 3 && (t.shape()[2] <= 1 || t.strides()[2] == 1), op, ": ",
           shape_str(t.shape()), " must be (B, T, W) with the last dim contiguous");
  return {t.host_data<D>(), t.strides()[0], t.strides()[1]};
}

// A (B, NH, T) tensor, contiguous.
template <typename D>
D* plane(const Tensor& t, const char* op) {
  MS_CHECK(t.dim() == 3 && t.is_contiguous(), op, ": lse/delta ", shape_str(t.shape()),
           " must be a contiguous (B, n_head, T)");
  return t.host_data<D>();
}

struct Dims {
  int64_t B, Tq, Tk, NH, hs;
};

Dims check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& q_pos,
               const std::vector<int64_t>& k_pos, int64_t n_head, const DropoutMask* mask,
               const char* op) {
  MS_CHECK(q.dim() == 3 && k.dim() == 3 && v.shape() == k.shape() && q.shape()[0] == k.shape()[0] &&
               q.shape()[2] == k.shape()[2],
           op, ": q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
           shape_str(v.shape()), " must be (B, Tq, W), (B, Tk, W), (B, Tk, W)");
  MS_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, ": q, k, v dtypes differ");
  MS_CHECK(q.device() == Device::CPU && k.device() == Device::CPU && v.device() == Device::CPU, op,
           ": CPU tensors only (a CUDA twin is planned)");
  const int64_t W = q.shape()[2];
  MS_CHECK(n_head > 0 && W % n_head == 0, op, ": width ", W, " is not divisible by n_head ",
           n_head);
  MS_CHECK(int64_t(q_pos.size()) == q.shape()[1] && int64_t(k_pos.size()) == k.shape()[1], op, ": ",
           q_pos.size(), " query and ", k_pos.size(), " key positions for q ", shape_str(q.shape()),
           " and k ", shape_str(k.shape()));
  MS_CHECK(std::is_sorted(k_pos.begin(), k_pos.end()), op,
           ": key positions must increase (a key chunk or zig-zag's two chunks in order)");
  if (mask) {
    MS_CHECK(mask->shape.size() == 4 && mask->shape[0] == q.shape()[0] &&
                 mask->shape[1] == n_head && mask->shape[2] == mask->shape[3],
             op, ": dropout mask ", shape_str(mask->shape), " must be (B, n_head, T, T)");
    for (const auto* pos : {&q_pos, &k_pos})
      for (int64_t p : *pos)
        MS_CHECK(p >= 0 && p < mask->shape[2], op, ": position ", p, " is outside the mask's T ",
                 mask->shape[2]);
  }
  return {q.shape()[0], q.shape()[1], k.shape()[1], n_head, W / n_head};
}

// Running (out_row, lse) <- merge with (part_row, part_lse); online_softmax.h.
template <typename D>
void merge_row(D* out, D& lse, const D* part, D part_lse, int64_t hs) {
  constexpr D kNegInf = -std::numeric_limits<D>::infinity();
  if (part_lse == kNegInf) return;
  if (lse == kNegInf) {
    for (int64_t d = 0; d < hs; ++d) out[d] = part[d];
    lse = part_lse;
    return;
  }
  const D hi = std::max(lse, part_lse), lo = std::min(lse, part_lse);
  const D merged = hi + std::log1p(std::exp(lo - hi));
  const D a = std::exp(lse - merged), b = std::exp(part_lse - merged);
  for (int64_t d = 0; d < hs; ++d) out[d] = a * out[d] + b * part[d];
  lse = merged;
}

// For each query row, how many leading keys it sees: one past the last key
// at or before the query's position (0: it sees none). The keys' positions
// increase (check_qkv), so what a query sees is this prefix.
std::vector<int64_t> key_extent(const std::vector<int64_t>& q_pos,
                                const std::vector<int64_t>& k_pos) {
  std::vector<int64_t> n(q_pos.size(), 0);
  for (size_t i = 0; i < q_pos.size(); ++i)
    n[i] = std::upper_bound(k_pos.begin(), k_pos.end(), q_pos[i]) - k_pos.begin();
  return n;
}

bool worth_threads(const Dims& n) {
  return n.B * n.NH > 1 && n.B * n.NH * n.Tq * n.Tk * n.hs > (1 << 16);
}

// (b, h)'s rows of q, k, v as the serial kernel's head (tensor/cpu/flash_attention.h).
template <typename D>
cpu::AttentionHead<D> head_of(const Rows<D>& q, const Rows<D>& k, const Rows<D>& v, int64_t b,
                              int64_t h, const Dims& n, const std::vector<int64_t>& extent,
                              const std::vector<int64_t>& q_pos, const std::vector<int64_t>& k_pos,
                              const DropoutMask* mask) {
  cpu::AttentionHead<D> hd{q.row(b, 0) + h * n.hs, q.st, k.row(b, 0) + h * n.hs, k.st,
                           v.row(b, 0) + h * n.hs, v.st, n.Tq, n.Tk, n.hs};
  hd.extent = extent.data();
  if (mask) {
    const int64_t T = mask->shape[2];
    hd.keep = mask->data() + (b * n.NH + h) * T * T;  // (T, T), at global positions
    hd.keep_ld = T;
    hd.q_pos = q_pos.data();
    hd.k_pos = k_pos.data();
    hd.keep_scale = D(1.0 / (1.0 - mask->p));
  }
  return hd;
}

// The partial over these keys by the serial kernel's head function, merged
// into the running (out, lse).
template <typename D>
void accumulate_kernel(const Tensor& out_t, const Tensor& lse_t, const Tensor& q_t,
                       const Tensor& k_t, const Tensor& v_t, const std::vector<int64_t>& q_pos,
                       const std::vector<int64_t>& k_pos, const Dims& n, const DropoutMask* mask) {
  const char* op = "attention_accumulate";
  const Rows<D> out = rows<D>(out_t, op), q = rows<D>(q_t, op), k = rows<D>(k_t, op),
                v = rows<D>(v_t, op);
  D* lse = plane<D>(lse_t, op);
  const std::vector<int64_t> extent = key_extent(q_pos, k_pos);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(n))
  for (int64_t b = 0; b < n.B; ++b)
    for (int64_t h = 0; h < n.NH; ++h) {
      std::vector<D> o(size_t(n.Tq * n.hs)), l(size_t(n.Tq));  // the partial (Tq, hs), (Tq)
      cpu::attention_head_forward(head_of(q, k, v, b, h, n, extent, q_pos, k_pos, mask),
                                  o.data(), n.hs, l.data());
      for (int64_t i = 0; i < n.Tq; ++i)
        merge_row(out.row(b, i) + h * n.hs, lse[(b * n.NH + h) * n.Tq + i],
                  o.data() + i * n.hs, l[size_t(i)], n.hs);
    }
}

template <typename D>
void backward_kernel(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t, const Tensor& do_t,
                     const Tensor& lse_t, const Tensor& delta_t, const std::vector<int64_t>& q_pos,
                     const std::vector<int64_t>& k_pos, const Dims& n, const DropoutMask* mask,
                     const Tensor& dq_t, const Tensor& dk_t, const Tensor& dv_t) {
  const char* op = "attention_partial_backward";
  const Rows<D> q = rows<D>(q_t, op), k = rows<D>(k_t, op), v = rows<D>(v_t, op),
                dout = rows<D>(do_t, op), dq = rows<D>(dq_t, op), dk = rows<D>(dk_t, op),
                dv = rows<D>(dv_t, op);
  const D* lse = plane<D>(lse_t, op);
  const D* delta = plane<D>(delta_t, op);
  const std::vector<int64_t> extent = key_extent(q_pos, k_pos);
  // Heads write disjoint channels of dq, dk, dv: one task per (b, h).
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(n))
  for (int64_t b = 0; b < n.B; ++b)
    for (int64_t h = 0; h < n.NH; ++h)
      cpu::attention_head_backward(head_of(q, k, v, b, h, n, extent, q_pos, k_pos, mask),
                                   dout.row(b, 0) + h * n.hs, dout.st,
                                   lse + (b * n.NH + h) * n.Tq, delta + (b * n.NH + h) * n.Tq,
                                   dq.row(b, 0) + h * n.hs, dq.st, dk.row(b, 0) + h * n.hs, dk.st,
                                   dv.row(b, 0) + h * n.hs, dv.st);
}

}  // namespace

PartialAttention empty_partial(int64_t B, int64_t Tq, int64_t n_head, int64_t hs, DType dtype) {
  return {zeros({B, Tq, n_head * hs}, dtype),
          full({B, n_head, Tq}, -std::numeric_limits<double>::infinity(), dtype)};
}

void attention_accumulate(PartialAttention& acc, const Tensor& q, const Tensor& k, const Tensor& v,
                          const std::vector<int64_t>& q_pos, const std::vector<int64_t>& k_pos,
                          int64_t n_head, const DropoutMask* attn_mask) {
  const Dims n = check_qkv(q, k, v, q_pos, k_pos, n_head, attn_mask, "attention_accumulate");
  MS_CHECK(acc.out.shape() == q.shape() && acc.lse.shape() == Shape({n.B, n.NH, n.Tq}) &&
               acc.out.dtype() == q.dtype() && acc.lse.dtype() == q.dtype(),
           "attention_accumulate: running out ", shape_str(acc.out.shape()), " / lse ",
           shape_str(acc.lse.shape()), " do not match q ", shape_str(q.shape()));
  dispatch_compute(q.dtype(), "attention_accumulate", [&](auto tag) {
    using D = decltype(tag);
    accumulate_kernel<D>(acc.out, acc.lse, q, k, v, q_pos, k_pos, n, attn_mask);
  });
}

PartialAttention attention_partial(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const std::vector<int64_t>& q_pos,
                                   const std::vector<int64_t>& k_pos, int64_t n_head,
                                   const DropoutMask* attn_mask) {
  MS_CHECK(q.dim() == 3, "attention_partial: q must be (B, Tq, W), got ", shape_str(q.shape()));
  PartialAttention p =
      empty_partial(q.shape()[0], q.shape()[1], n_head, q.shape()[2] / n_head, q.dtype());
  attention_accumulate(p, q, k, v, q_pos, k_pos, n_head, attn_mask);
  return p;
}

void merge_partial(PartialAttention& acc, const PartialAttention& part) {
  MS_CHECK(acc.out.shape() == part.out.shape() && acc.lse.shape() == part.lse.shape() &&
               acc.out.dtype() == part.out.dtype() && acc.out.device() == Device::CPU &&
               part.out.device() == Device::CPU && acc.lse.dim() == 3,
           "merge_partial: out ", shape_str(acc.out.shape()), " / ", shape_str(part.out.shape()),
           " and lse ", shape_str(acc.lse.shape()), " / ", shape_str(part.lse.shape()),
           " must match (CPU tensors)");
  const int64_t B = acc.lse.shape()[0], NH = acc.lse.shape()[1], Tq = acc.lse.shape()[2],
                hs = acc.out.shape()[2] / NH;
  dispatch_compute(acc.out.dtype(), "merge_partial", [&](auto tag) {
    using D = decltype(tag);
    const Rows<D> out = rows<D>(acc.out, "merge_partial"), src = rows<D>(part.out, "merge_partial");
    D* lse = plane<D>(acc.lse, "merge_partial");
    const D* plse = plane<D>(part.lse, "merge_partial");
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h)
        for (int64_t i = 0; i < Tq; ++i)
          merge_row(out.row(b, i) + h * hs, lse[(b * NH + h) * Tq + i], src.row(b, i) + h * hs,
                    plse[(b * NH + h) * Tq + i], hs);
  });
}

Tensor attention_delta(const Tensor& dout, const Tensor& out, int64_t n_head) {
  MS_CHECK(dout.shape() == out.shape() && out.dim() == 3 && out.shape()[2] % n_head == 0 &&
               dout.dtype() == out.dtype() && out.device() == Device::CPU,
           "attention_delta: dout ", shape_str(dout.shape()), " and out ", shape_str(out.shape()),
           " must be equal (B, T, n_head·hs) CPU tensors");
  const int64_t B = out.shape()[0], Tq = out.shape()[1], hs = out.shape()[2] / n_head;
  Tensor delta = Tensor::empty({B, n_head, Tq}, out.dtype());
  dispatch_compute(out.dtype(), "attention_delta", [&](auto tag) {
    using D = decltype(tag);
    const Rows<D> o = rows<D>(out, "attention_delta"), g = rows<D>(dout, "attention_delta");
    D* dl = delta.host_data<D>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < n_head; ++h)
        for (int64_t i = 0; i < Tq; ++i) {
          D s = 0;
          for (int64_t d = 0; d < hs; ++d) s += o.row(b, i)[h * hs + d] * g.row(b, i)[h * hs + d];
          dl[(b * n_head + h) * Tq + i] = s;
        }
  });
  return delta;
}

void attention_partial_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& dout, const Tensor& lse, const Tensor& delta,
                                const std::vector<int64_t>& q_pos,
                                const std::vector<int64_t>& k_pos, int64_t n_head,
                                const DropoutMask* attn_mask, const Tensor& dq, const Tensor& dk,
                                const Tensor& dv) {
  const Dims n = check_qkv(q, k, v, q_pos, k_pos, n_head, attn_mask, "attention_partial_backward");
  MS_CHECK(dout.shape() == q.shape() && dq.shape() == q.shape() && dk.shape() == k.shape() &&
               dv.shape() == v.shape() && lse.shape() == Shape({n.B, n.NH, n.Tq}) &&
               delta.shape() == lse.shape(),
           "attention_partial_backward: dout ", shape_str(dout.shape()), ", dq ",
           shape_str(dq.shape()), ", dk ", shape_str(dk.shape()), ", dv ", shape_str(dv.shape()),
           ", lse ", shape_str(lse.shape()), ", delta ", shape_str(delta.shape()),
           " do not match q ", shape_str(q.shape()), " and k ", shape_str(k.shape()));
  dispatch_compute(q.dtype(), "attention_partial_backward", [&](auto tag) {
    using D = decltype(tag);
    backward_kernel<D>(q, k, v, dout, lse, delta, q_pos, k_pos, n, attn_mask, dq, dk, dv);
  });
}

}  // namespace ms
