// Fused causal self-attention and dropout.
#include "autograd/mixed.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/cpu/attention.h"

namespace ms {

Tensor causal_attention(const Tensor& qkv, int64_t n_head) {
  // Scores and softmax in f32; only the (B, T, C) output is rounded (mixed.h).
  if (auto d = mixed::result_dtype({&qkv}, "causal_attention"))
    return mixed::recompute_in_f32("causal_attention", {qkv}, *d, [n_head](const auto& t) {
      return causal_attention(t[0], n_head);
    });
  MS_CHECK(is_compute_dtype(qkv.dtype()) && qkv.dim() == 3 && qkv.shape()[2] % 3 == 0,
           "causal_attention: qkv must be (B, T, 3C) f32/f64, got ", shape_str(qkv.shape()), " ",
           dtype_name(qkv.dtype()));
  int64_t B = qkv.shape()[0], T = qkv.shape()[1], C = qkv.shape()[2] / 3;
  MS_CHECK(n_head > 0 && C % n_head == 0, "causal_attention: n_embd ", C,
           " is not divisible by n_head ", n_head);
  Tensor x = contiguous(detach(qkv));
  Tensor out = Tensor::empty({B, T, C}, qkv.dtype());
  Tensor att = Tensor::empty({B, n_head, T, T}, qkv.dtype());  // (B, NH, T, T)
  if (qkv.device() == Device::CPU) {
    dispatch_compute(qkv.dtype(), "causal_attention", [&](auto tag) {
      using D = decltype(tag);
      cpu::attention_forward<D>(out.data<D>(), att.data<D>(), x.data<D>(), B, T, C, n_head);
    });
  } else {
    cuda_kernels_planned("causal_attention");
  }
  if (needs_grad({&qkv})) {
    record(out, "causal_attention", {qkv}, [x, att, B, T, C, n_head](const Tensor& g) {
      Tensor gc = contiguous(g);
      Tensor dqkv = Tensor::empty({B, T, 3 * C}, x.dtype());
      Tensor scratch = Tensor::empty(att.shape(), x.dtype());
      dispatch_compute(x.dtype(), "causal_attention backward", [&](auto tag) {
        using D = decltype(tag);
        cpu::attention_backward<D>(dqkv.data<D>(), scratch.data<D>(), gc.data<D>(), x.data<D>(),
                                   att.data<D>(), B, T, C, n_head);
      });
      return std::vector<Tensor>{dqkv};
    });
  }
  return out;
}

Tensor dropout(const Tensor& x, double p, Generator& gen) {
  MS_CHECK(p >= 0 && p < 1, "dropout: probability ", p, " must be in [0, 1)");
  if (p == 0) return x;
  // The kept elements' 1/(1-p) is applied in f32: rounded to 16-bit first it
  // would no longer be the inverse of the keep rate (mixed.h).
  if (auto d = mixed::result_dtype({&x}, "dropout")) return mixed::down(dropout(mixed::up(x), p, gen), *d);
  Tensor keep = Tensor::empty(x.shape(), x.dtype());  // mask, already scaled by 1/(1-p)
  std::vector<double> m(x.numel());
  double scale = 1.0 / (1.0 - p);
  for (double& v : m) v = gen.uniform() < p ? 0.0 : scale;
  return mul(x, from_vector(m, x.shape(), x.dtype()));
}

}  // namespace ms
