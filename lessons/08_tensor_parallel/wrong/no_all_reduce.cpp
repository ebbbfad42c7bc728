// expect: the all-reduce is missing
// Lesson 08, deliberately wrong: never sums the partial products: each rank returns x_r·W_r + b.
#include "lessons/08_tensor_parallel/lesson.h"

ms::Tensor row_parallel_shard(const ms::Tensor& w_full, ms::Communicator& tp) {
  const int64_t k = w_full.shape()[0] / tp.size();
  // Rows r·k.. multiply exactly the input features this rank holds.
  return ms::contiguous(ms::narrow(w_full, 0, tp.rank() * k, k));  // [k, out]
}

ms::Tensor my_row_parallel_linear(ms::Communicator& /*tp: unused, the bug*/, const ms::Tensor& x,
                                  const ms::Tensor& w, const ms::Tensor& b) {
  ms::Tensor y;
  {
    ms::NoGradGuard no_grad;  // one Node for the whole layer, recorded below
    // x_full·W = Σ_r x_r·W_r: each rank's product is one term of the sum.
    y = ms::linear(x, w);  // (B, T, out), a fresh buffer: all_reduce works in place
    // After the sum, once: inside it the bias would be added t times.
    y = ms::add(y, b);
  }
  if (ms::needs_grad({&x, &w, &b})) {
    auto backward = [x = ms::detach(x), w = ms::detach(w)](const ms::Tensor& g) {
      // g's backward is the identity: dy is already the same on every rank,
      // and each rank needs only its own x and w to use it.
      const int64_t k = w.shape()[0], out = w.shape()[1];
      ms::Tensor dy = ms::reshape(ms::contiguous(g), {-1, out});                     // (B·T, out)
      ms::Tensor dx = ms::matmul(dy, ms::transpose(w, 0, 1));                        // (B·T, k)
      ms::Tensor dw = ms::matmul(ms::transpose(ms::reshape(x, {-1, k}), 0, 1), dy);  // [k, out]
      ms::Tensor db = ms::sum(dy, {0});  // [out]: every rank has all of dy, so no sum over tp
      return std::vector<ms::Tensor>{ms::reshape(dx, x.shape()), dw, db};
    };
    ms::record(y, "my_row_parallel_linear", {x, w, b}, backward);
  }
  return y;
}
