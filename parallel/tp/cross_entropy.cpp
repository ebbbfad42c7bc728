// Vocab-parallel cross-entropy (cross_entropy.h).
#include "parallel/tp/cross_entropy.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "parallel/tp/vocab_parallel.h"

namespace ms {

Tensor vocab_parallel_cross_entropy(const Tensor& logits_shard, const Tensor& targets,
                                    Communicator& tp) {
  const char* op = "vocab_parallel_cross_entropy";
  MS_CHECK(logits_shard.dim() == 2 && targets.dim() == 1 &&
               targets.shape()[0] == logits_shard.shape()[0],
           op, ": logits shard must be (N, V/tp) and targets (N), got ",
           shape_str(logits_shard.shape()), " and ", shape_str(targets.shape()));
  MS_CHECK(targets.dtype() == DType::I32, op, ": targets must be i32, got ",
           dtype_name(targets.dtype()));
  const int64_t N = logits_shard.shape()[0], Vl = logits_shard.shape()[1], V = Vl * tp.size();
  MS_CHECK(N > 0, op, ": no rows to average over");
  const VocabRange mine = vocab_range(V, tp.rank(), tp.size());
  Tensor tc = contiguous(targets);
  const int32_t* tgt = tc.host_data<int32_t>();
  for (int64_t n = 0; n < N; ++n)
    MS_CHECK(tgt[n] >= 0 && tgt[n] < V, op, ": target ", tgt[n], " at position ", n,
             " is out of range [0, ", V, ")");

  const DType dt = logits_shard.dtype();
  Tensor lc = contiguous(detach(logits_shard));
  Tensor row_max = Tensor::empty({N}, dt), target_logit = Tensor::empty({N}, dt),
         sum_exp = Tensor::empty({N}, dt);      // (N) each: the three all-reduced vectors
  Tensor softmax = Tensor::empty({N, Vl}, dt);  // (N, V/t): saved for backward
  double loss = dispatch_compute(dt, op, [&](auto tag) {
    using T = decltype(tag);
    const T* x = lc.host_data<T>();
    T* m = row_max.host_data<T>();
    T* z = target_logit.host_data<T>();
    T* s = sum_exp.host_data<T>();
    T* e = softmax.host_data<T>();
    for (int64_t n = 0; n < N; ++n) {
      m[n] = x[n * Vl];
      for (int64_t v = 1; v < Vl; ++v) m[n] = std::max(m[n], x[n * Vl + v]);
    }
    tp.all_reduce(row_max, ReduceOp::Max);  // 1
    for (int64_t n = 0; n < N; ++n) {
      const bool owned = tgt[n] >= mine.start && tgt[n] < mine.end;
      z[n] = owned ? T(x[n * Vl + (tgt[n] - mine.start)] - m[n]) : T(0);
    }
    tp.all_reduce(target_logit, ReduceOp::Sum);  // 2
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t v = 0; v < Vl; ++v) {
        e[n * Vl + v] = T(std::exp(double(x[n * Vl + v] - m[n])));
        acc += double(e[n * Vl + v]);
      }
      s[n] = T(acc);
    }
    tp.all_reduce(sum_exp, ReduceOp::Sum);  // 3
    double total = 0;
    for (int64_t n = 0; n < N; ++n) {
      total += std::log(double(s[n])) - double(z[n]);
      for (int64_t v = 0; v < Vl; ++v) e[n * Vl + v] = T(double(e[n * Vl + v]) / double(s[n]));
    }
    return total / double(N);
  });

  Tensor out = full({}, loss, dt);
  if (needs_grad({&logits_shard})) {
    record(out, op, {logits_shard, Tensor()}, [softmax, tc, mine, N, Vl](const Tensor& g) {
      Tensor d = clone(softmax);  // (N, V/t)
      const double scale = g.item() / double(N);
      dispatch_compute(d.dtype(), "vocab_parallel_cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        T* p = d.host_data<T>();
        const int32_t* tgt = tc.host_data<int32_t>();
        for (int64_t n = 0; n < N; ++n) {
          if (tgt[n] >= mine.start && tgt[n] < mine.end) p[n * Vl + (tgt[n] - mine.start)] -= T(1);
          for (int64_t v = 0; v < Vl; ++v) p[n * Vl + v] = T(p[n * Vl + v] * scale);
        }
      });
      return std::vector<Tensor>{d, Tensor()};
    });
  }
  return out;
}

}  // namespace ms
