// Blockwise attention with lse (see online_softmax.h): CPU kernels behind a
// device switch, one (batch, head) per OpenMP task.
#include "parallel/cp/online_softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/cpu/gemm.h"
#include "tensor/cpu/vec_math.h"

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

// Query rows per GEMM tile, as tensor/cpu/attention.cpp: a tile scores the
// keys up to the last one any of its rows sees, so causality skips whole key
// ranges and wastes at most a triangle of one tile on the diagonal.
constexpr int64_t kRows = 48;

template <typename D>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, D alpha, const D* A, int64_t lda,
          const D* B, int64_t ldb, D beta, D* C, int64_t ldc) {
  if constexpr (std::is_same_v<D, float>)
    cpu::gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    cpu::gemm_f64(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename D>
D exp_of(D x) {
  if constexpr (std::is_same_v<D, float>)
    return cpu::fast_expf(x);  // the serial kernel's exp (tensor/cpu/vec_math.h)
  else
    return std::exp(x);
}

// For each query row, how many leading keys a GEMM must cover: one past the
// last key at or before the query's position (0: it sees none).
std::vector<int64_t> key_extent(const std::vector<int64_t>& q_pos,
                                const std::vector<int64_t>& k_pos) {
  std::vector<int64_t> n(q_pos.size(), 0);
  for (size_t i = 0; i < q_pos.size(); ++i)
    for (size_t j = k_pos.size(); j > 0; --j)
      if (k_pos[j - 1] <= q_pos[i]) {
        n[i] = int64_t(j);
        break;
      }
  return n;
}

bool worth_threads(const Dims& n) {
  return n.B * n.NH > 1 && n.B * n.NH * n.Tq * n.Tk * n.hs > (1 << 16);
}

template <typename D>
void accumulate_kernel(const Tensor& out_t, const Tensor& lse_t, const Tensor& q_t,
                       const Tensor& k_t, const Tensor& v_t, const std::vector<int64_t>& q_pos,
                       const std::vector<int64_t>& k_pos, const Dims& n, const DropoutMask* mask) {
  const char* op = "attention_accumulate";
  const Rows<D> out = rows<D>(out_t, op), q = rows<D>(q_t, op), k = rows<D>(k_t, op),
                v = rows<D>(v_t, op);
  D* lse = plane<D>(lse_t, op);
  const D scale = D(1) / std::sqrt(D(n.hs));
  const uint8_t* keep = mask ? mask->data() : nullptr;
  const int64_t T = mask ? mask->shape[2] : 0;
  const D keep_scale = mask ? D(1.0 / (1.0 - mask->p)) : D(1);
  const std::vector<int64_t> extent = key_extent(q_pos, k_pos);
  constexpr D kNegInf = -std::numeric_limits<D>::infinity();
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(n))
  for (int64_t b = 0; b < n.B; ++b)
    for (int64_t h = 0; h < n.NH; ++h) {
      std::vector<D> w(size_t(kRows * n.Tk)), o(size_t(kRows * n.hs)), m(kRows), l(kRows);
      for (int64_t i0 = 0; i0 < n.Tq; i0 += kRows) {
        const int64_t i1 = std::min(n.Tq, i0 + kRows), rows_n = i1 - i0;
        const int64_t nv = *std::max_element(extent.begin() + i0, extent.begin() + i1);
        if (nv == 0) continue;  // a chunk pair above the diagonal: nothing to compute
        gemm<D>(false, true, rows_n, nv, n.hs, scale, q.row(b, i0) + h * n.hs, q.st,
                k.row(b, 0) + h * n.hs, k.st, D(0), w.data(), nv);  // q·kᵀ/√hs (rows, nv)
        for (int64_t i = i0; i < i1; ++i) {
          D* s = w.data() + (i - i0) * nv;
          const int64_t qp = q_pos[i];
          D mx = kNegInf;
          for (int64_t j = 0; j < nv; ++j)
            if (k_pos[j] <= qp) mx = std::max(mx, s[j]);
          D sum = 0;
          const uint8_t* keep_row = keep ? keep + ((b * n.NH + h) * T + qp) * T : nullptr;
          for (int64_t j = 0; j < nv; ++j) {
            if (k_pos[j] > qp) {  // causal: weight 0 (and never exp'd)
              s[j] = D(0);
              continue;
            }
            const D e = exp_of<D>(s[j] - mx);
            sum += e;  // the normaliser is the undropped softmax's
            s[j] = keep_row ? (keep_row[k_pos[j]] ? e * keep_scale : D(0)) : e;
          }
          m[i - i0] = mx;
          l[i - i0] = sum;
        }
        gemm<D>(false, false, rows_n, n.hs, nv, D(1), w.data(), nv, v.row(b, 0) + h * n.hs, v.st,
                D(0), o.data(), n.hs);  // weights·v (rows, hs)
        for (int64_t i = i0; i < i1; ++i) {
          const D sum = l[i - i0];
          if (sum == D(0)) continue;  // no visible key: the merge's identity
          D* oi = o.data() + (i - i0) * n.hs;
          for (int64_t d = 0; d < n.hs; ++d) oi[d] /= sum;
          merge_row(out.row(b, i) + h * n.hs, lse[(b * n.NH + h) * n.Tq + i], oi,
                    m[i - i0] + std::log(sum), n.hs);
        }
      }
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
  const D scale = D(1) / std::sqrt(D(n.hs));
  const uint8_t* keep = mask ? mask->data() : nullptr;
  const int64_t T = mask ? mask->shape[2] : 0;
  const D keep_scale = mask ? D(1.0 / (1.0 - mask->p)) : D(1);
  const std::vector<int64_t> extent = key_extent(q_pos, k_pos);
  // Heads write disjoint channels of dq, dk, dv: one task per (b, h).
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(n))
  for (int64_t b = 0; b < n.B; ++b)
    for (int64_t h = 0; h < n.NH; ++h) {
      std::vector<D> p(size_t(kRows * n.Tk)), dp(size_t(kRows * n.Tk));
      for (int64_t i0 = 0; i0 < n.Tq; i0 += kRows) {
        const int64_t i1 = std::min(n.Tq, i0 + kRows), rows_n = i1 - i0;
        const int64_t nv = *std::max_element(extent.begin() + i0, extent.begin() + i1);
        if (nv == 0) continue;
        const D* qt = q.row(b, i0) + h * n.hs;
        const D* dot = dout.row(b, i0) + h * n.hs;
        gemm<D>(false, true, rows_n, nv, n.hs, scale, qt, q.st, k.row(b, 0) + h * n.hs, k.st, D(0),
                p.data(), nv);  // S = q·kᵀ/√hs
        gemm<D>(false, true, rows_n, nv, n.hs, D(1), dot, dout.st, v.row(b, 0) + h * n.hs, v.st,
                D(0), dp.data(), nv);  // dO·vᵀ
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t qp = q_pos[i];
          const D L = lse[(b * n.NH + h) * n.Tq + i], dlt = delta[(b * n.NH + h) * n.Tq + i];
          const bool none = L == -std::numeric_limits<D>::infinity();
          const uint8_t* keep_row = keep ? keep + ((b * n.NH + h) * T + qp) * T : nullptr;
          D* pi = p.data() + (i - i0) * nv;
          D* dpi = dp.data() + (i - i0) * nv;
          for (int64_t j = 0; j < nv; ++j) {
            if (none || k_pos[j] > qp) {
              pi[j] = dpi[j] = D(0);
              continue;
            }
            const D pr = exp_of<D>(pi[j] - L);  // P from the final lse
            const D mk = keep_row ? (keep_row[k_pos[j]] ? keep_scale : D(0)) : D(1);
            pi[j] = pr * mk;                            // the dropped P, for dV
            dpi[j] = pr * (mk * dpi[j] - dlt) * scale;  // dS, scaled for dQ and dK
          }
        }
        gemm<D>(true, false, nv, n.hs, rows_n, D(1), p.data(), nv, dot, dout.st, D(1),
                dv.row(b, 0) + h * n.hs, dv.st);  // dV += (P∘m)ᵀ·dO
        gemm<D>(false, false, rows_n, n.hs, nv, D(1), dp.data(), nv, k.row(b, 0) + h * n.hs, k.st,
                D(1), dq.row(b, i0) + h * n.hs, dq.st);  // dQ += dS·k
        gemm<D>(true, false, nv, n.hs, rows_n, D(1), dp.data(), nv, qt, q.st, D(1),
                dk.row(b, 0) + h * n.hs, dk.st);  // dK += dSᵀ·q
      }
    }
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
