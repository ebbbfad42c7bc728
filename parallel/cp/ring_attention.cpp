#include "parallel/cp/ring_attention.h"

namespace ms {

Tensor ring_attention(const Tensor&, int64_t, bool zigzag, Communicator&, double, Generator&) {
  throw Error(str_cat("cp attention (", zigzag ? "zigzag" : "ring", "): not implemented yet"));
}

}  // namespace ms
