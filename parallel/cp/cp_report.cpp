// The cp attention memory line (cp_report.h).
#include "parallel/cp/cp_report.h"

#include "autograd/ops.h"
#include "parallel/cp/cp_attention.h"
#include "parallel/cp/cp_gather_attention.h"
#include "parallel/zero/memory.h"  // format_bytes
#include "tensor/factory.h"
#include "tensor/storage.h"

namespace ms {

CpAttentionKept cp_attention_kept(const std::string& algo, int64_t T, int64_t C, int64_t H,
                                  int64_t Cl) {
  const int64_t n = T / C;
  if (algo == "ulysses")  // q|k|v and the output of H/C heads over T, their lse, my rows back
    return {T * 3 * Cl / C + T * Cl / C + (H / C) * T + n * Cl,
            "B·(T·3Cl/C + T·Cl/C + (H/C)·T + (T/C)·Cl)·4"};
  if (algo == "allgather")  // the gathered q|k|v, every row's output and lse (my rows: a view at B 1)
    return {T * 3 * Cl + T * Cl + H * T, "B·(T·3Cl + T·Cl + H·T)·4"};
  return {n * Cl + H * n, "B·((T/C)·Cl + H·T/C)·4"};  // ring, zigzag: my output and its lse
}

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
  const CpAttentionKept k = cp_attention_kept(algo, T, C, H, n_embd_local);
  const int64_t scores = algo == "ulysses"     ? (H / C) * T * T
                         : algo == "allgather" ? H * T * T
                                               : H * (algo == "zigzag" ? n / 2 : n) *
                                                     (algo == "zigzag" ? n / 2 : n);
  return str_cat("cp attention memory per rank and layer (", algo, ", cp ", C, ", B ", B, ", T ", T,
                 ", ", H, " head(s) per tp rank): kept for backward ", k.formula, " = ",
                 format_bytes(double(k.elements * 4 * B)), " bytes; measured ",
                 format_bytes(double(kept * B)), " (", format_bytes(double(kept)),
                 " at B = 1, × B). The scores (", format_bytes(double(scores * 4 * B)),
                 " bytes if materialized", algo == "ring" || algo == "zigzag" ? " per block pair" : "",
                 ") are never kept: the blocked kernel holds one tile and saves the log-sum-exp\n");
}

}  // namespace ms
