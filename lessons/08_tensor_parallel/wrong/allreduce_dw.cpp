// expect: you all-reduced dw in backward
// expect: dw is the SUM over the 2 tp ranks
// Lesson 08, deliberately wrong: all-reduces the weight gradient over tp in backward, as data
// parallelism does for replicated weights: here every rank's w is a different block of rows.
#include "lessons/08_tensor_parallel/lesson.h"

ms::Tensor row_parallel_shard(const ms::Tensor& w_full, ms::Communicator& tp) {
  const int64_t k = w_full.shape()[0] / tp.size();
  // Rows r·k.. multiply exactly the input features this rank holds.
  return ms::contiguous(ms::narrow(w_full, 0, tp.rank() * k, k));  // [k, out]
}

ms::Tensor my_row_parallel_linear(ms::Communicator& tp, const ms::Tensor& x, const ms::Tensor& w,
                                  const ms::Tensor& b) {
  ms::Tensor y;
  {
    ms::NoGradGuard no_grad;  // one Node for the whole layer, recorded below
    // x_full·W = Σ_r x_r·W_r: each rank's product is one term of the sum.
    y = ms::linear(x, w);                 // (B, T, out), a fresh buffer: all_reduce works in place
    tp.all_reduce(y, ms::ReduceOp::Sum);  // g forward
    // After the sum, once: inside it the bias would be added t times.
    y = ms::add(y, b);
  }
  if (ms::needs_grad({&x, &w, &b})) {
    auto backward = [&tp, x = ms::detach(x), w = ms::detach(w)](const ms::Tensor& g) {
      // g's backward is the identity: dy is already the same on every rank,
      // and each rank needs only its own x and w to use it.
      const int64_t k = w.shape()[0], out = w.shape()[1];
      ms::Tensor dy = ms::reshape(ms::contiguous(g), {-1, out});                     // (B·T, out)
      ms::Tensor dx = ms::matmul(dy, ms::transpose(w, 0, 1));                        // (B·T, k)
      ms::Tensor dw = ms::matmul(ms::transpose(ms::reshape(x, {-1, k}), 0, 1), dy);  // [k, out]
      ms::Tensor db = ms::sum(dy, {0});  // [out]: every rank has all of dy, so no sum over tp
      tp.all_reduce(dw, ms::ReduceOp::Sum);  // the bug: a sharded weight's gradient, summed
      return std::vector<ms::Tensor>{ms::reshape(dx, x.shape()), dw, db};
    };
    ms::record(y, "my_row_parallel_linear", {x, w, b}, backward);
  }
  return y;
}
