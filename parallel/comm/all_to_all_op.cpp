#include "parallel/comm/all_to_all_op.h"

#include "autograd/node.h"
#include "autograd/ops.h"

namespace ms {

Tensor differentiable_all_to_all(const Tensor& x, Communicator& group) {
  MS_CHECK(x.dim() >= 1 && x.shape()[0] % group.size() == 0, "all_to_all: dim 0 of ",
           shape_str(x.shape()), " does not split over a group of ", group.size(), " ranks");
  Tensor in = contiguous(detach(x));
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  group.all_to_all(in, out);
  if (needs_grad({&x}))
    record(out, "all_to_all", {x}, [group](const Tensor& g) mutable {
      Tensor gc = contiguous(g);
      Tensor dx = Tensor::empty(gc.shape(), gc.dtype());
      group.all_to_all(gc, dx);
      return std::vector<Tensor>{dx};
    });
  return out;
}

}  // namespace ms
