#include "parallel/comm/overflow.h"

#include "tensor/factory.h"

namespace ms {

bool agree_on_overflow(bool local, std::initializer_list<Communicator*> groups) {
  // One i32 flag, 0 or 1: MAX is OR, and i32 is reduced natively (no f32
  // round trip as for the 16-bit types).
  Tensor flag = from_vector(std::vector<int32_t>{local ? 1 : 0}, {1});
  for (Communicator* group : groups)
    if (group != nullptr) group->all_reduce(flag, ReduceOp::Max);
  return flag.host_data<int32_t>()[0] != 0;
}

}  // namespace ms
