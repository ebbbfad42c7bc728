// The cp traffic formulas of traffic.h.
#include "parallel/cp/traffic.h"

#include "tensor/error.h"

namespace ms {

CpLayerTraffic cp_traffic_formula(CpAlgo algo, int64_t B, int64_t T, int64_t Cl, int C, int64_t e) {
  CpLayerTraffic t;
  if (C <= 1) return t;              // a 1-rank group talks to nobody
  const int64_t n = B * T * Cl * e;  // bytes of one (B, T, Cl) activation
  if (algo == CpAlgo::Ulysses) {
    t.op = CommOp::AllToAll;
    t.forward = 4 * (C - 1) * n / (int64_t(C) * C);
    t.backward = t.forward;
    t.rule = str_cat("ulysses: all_to_all of q|k|v and of the output, 4·(C−1)/C²·B·T·Cl·e = 4·",
                     C - 1, "/", C * C, "·", B, "·", T, "·", Cl, "·", e, " = ", t.forward,
                     " B per rank per layer, forward and again backward");
  } else {
    t.op = CommOp::Send;
    t.forward = 2 * (C - 1) * n / C;
    t.backward = 2 * (2 * C - 1) * n / C;
    t.rule = str_cat(cp_algo_name(algo), ": K|V around the ring, 2·(C−1)/C·B·T·Cl·e = 2·", C - 1,
                     "/", C, "·", B, "·", T, "·", Cl, "·", e, " = ", t.forward,
                     " B per rank per layer forward; backward K|V again + dK|dV home, 2·(2C−1)/C·"
                     "B·T·Cl·e = ",
                     t.backward, " B");
  }
  return t;
}

}  // namespace ms
