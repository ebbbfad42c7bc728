#include "parallel/ep/ep_traffic.h"

#include "tensor/error.h"

namespace ms {

int64_t ep_all_to_all_bytes(int64_t experts, int64_t capacity, int64_t C, int64_t elem, int P) {
  MS_CHECK(P >= 1 && experts % P == 0, "ep_all_to_all_bytes: ", experts,
           " experts do not split over ep ", P);
  return experts / P * (P - 1) * capacity * C * elem;  // P−1 blocks of E/P experts
}

int64_t ep_layer_bytes(int64_t experts, int64_t capacity, int64_t C, int64_t elem, int P) {
  return 4 * ep_all_to_all_bytes(experts, capacity, C, elem, P);
}

std::string ep_layer_formula(int64_t experts, int64_t capacity, int64_t C, int64_t elem, int P) {
  return str_cat("4 × E·capacity·C·", elem, "·(P−1)/P = 4 × ", experts, "·", capacity, "·", C, "·",
                 elem, "·", P - 1, "/", P);
}

}  // namespace ms
