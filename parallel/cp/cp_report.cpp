// The cp attention memory line (cp_report.h).
#include "parallel/cp/cp_report.h"

#include "autograd/ops.h"
#include "parallel/cp/cp_attention.h"
#include "parallel/cp/cp_gather_attention.h"
#include "parallel/zero/memory.h"  // format_bytes
#include "tensor/factory.h"
#include "tensor/storage.h"

namespace ms {

std::string cp_memory_report(Communicator& cp, const std::string& algo, int64_t B, int64_t T,
                             int64_t n_head_local, int64_t n_embd_local) {
  const int64_t C = cp.size(), H = n_head_local, n = T / C;
  // One sequence (B = 1) measured, × B: the samples of a batch never mix, and
  // a probe at the whole batch would cost a layer's scores before training.
  Generator gen(0x5eed), drop(0);
  Tensor qkv = randn({1, n, 3 * n_embd_local}, gen);
  qkv.set_requires_grad(true);
  int64_t kept = 0;
  {
    const size_t before = cpu_bytes_allocated();
    Tensor out = algo == "allgather"
                     ? cp_gather_attention(qkv, H, cp, 0.0, drop)
                     : cp_causal_attention(qkv, H, parse_cp_algo(algo), cp, 0.0, drop);
    kept = static_cast<int64_t>(cpu_bytes_allocated() - before);
  }
  std::string scores;
  if (algo == "ulysses") {
    const int64_t s = B * (H / C) * T * T * 4;
    scores = str_cat("scores B·(H/C)·T²·4 = ", B, "·", H / C, "·", T, "²·4 = ", format_bytes(s),
                     " bytes, kept for backward");
  } else if (algo == "allgather") {
    const int64_t s = B * H * T * T * 4;
    scores = str_cat("scores B·H·T²·4 = ", B, "·", H, "·", T, "²·4 = ", format_bytes(s),
                     " bytes (every rank scores the whole sequence), kept for backward");
  } else {
    const int64_t block = algo == "zigzag" ? n / 2 : n;  // zig-zag scores half-chunk pairs
    const int64_t s = B * H * block * block * 4;
    scores = str_cat("scores B·H·(", algo == "zigzag" ? "T/2C" : "T/C", ")²·4 = ", B, "·", H, "·",
                     block, "²·4 = ", format_bytes(s),
                     " bytes per block pair, freed after it (backward recomputes them from the "
                     "saved log-sum-exp)");
  }
  return str_cat("cp attention memory per rank and layer (", algo, ", cp ", C, ", B ", B, ", T ", T,
                 ", ", H, " head(s) per tp rank): ", scores,
                 "; measured: one attention call keeps ", format_bytes(double(kept * B)),
                 " bytes for backward (", format_bytes(double(kept)), " at B = 1, × B)\n");
}

}  // namespace ms
