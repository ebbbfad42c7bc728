// Lesson 17: the names of lesson.h's tensors, and the misconception behind
// each wrong answer the checker can see (check.cpp prints one, after what it
// measured). Korthikanti et al. 2022 §4.2.2 and Fig. 5 for the SP layout;
// parallel/tp/linear.h and mappings.h for our functions.
#pragma once
#include <string>

#include "lessons/17_testing_parallelism/lesson.h"

namespace lesson17 {

using Kind = ms::Placement::Kind;

inline const char* tensor_name(BlockTensor b) {
  switch (b) {
    case BlockTensor::Input:
      return "x (the block's input)";
    case BlockTensor::Ln1Out:
      return "ln_1 output";
    case BlockTensor::CAttnInput:
      return "c_attn input (ln_1 output all-gathered)";
    case BlockTensor::CAttnOut:
      return "c_attn output (q|k|v)";
    case BlockTensor::AttnOut:
      return "attention output";
    case BlockTensor::AttnProjPartial:
      return "attn.c_proj GEMM output (before reduction)";
    case BlockTensor::AttnProjReduced:
      return "attn.c_proj after reduce-scatter + bias";
    case BlockTensor::Residual1:
      return "residual x + attention";
    case BlockTensor::Ln2Out:
      return "ln_2 output";
    case BlockTensor::FcOut:
      return "mlp.c_fc output";
    case BlockTensor::GeluOut:
      return "gelu output";
    case BlockTensor::MlpProjPartial:
      return "mlp.c_proj GEMM output (before reduction)";
    case BlockTensor::MlpProjReduced:
      return "mlp.c_proj after reduce-scatter + bias";
    case BlockTensor::Output:
      return "block output";
    case BlockTensor::CAttnWeight:
      return "attn.c_attn.weight";
    case BlockTensor::CAttnBias:
      return "attn.c_attn.bias";
    case BlockTensor::AttnProjWeight:
      return "attn.c_proj.weight";
    case BlockTensor::AttnProjBias:
      return "attn.c_proj.bias";
    case BlockTensor::Ln1Weight:
      return "ln_1.weight";
    case BlockTensor::CAttnWeightGrad:
      return "gradient of attn.c_attn.weight";
    case BlockTensor::AttnProjWeightGrad:
      return "gradient of attn.c_proj.weight";
    case BlockTensor::AttnProjBiasGrad:
      return "gradient of attn.c_proj.bias";
    case BlockTensor::Ln1WeightGrad:
      return "gradient of ln_1.weight";
  }
  return "?";
}

// Why `which` has the placement the checker measured, aimed at the
// learner's answer `said`.
inline std::string hint(BlockTensor which, ms::Placement said) {
  if (said.is(Kind::Unknown))
    return "every tensor here crosses the tp group and has a placement: replicated(), "
           "sharded(dim, ndim) or partial()";
  switch (which) {
    case BlockTensor::Input:
    case BlockTensor::Ln1Out:
    case BlockTensor::Residual1:
    case BlockTensor::Ln2Out:
    case BlockTensor::Output:
      if (said.is(Kind::Sharded))
        return "sequence parallelism cuts T (dim 1 of (B, T, C)), not the features: outside "
               "the GEMMs every rank holds all C features of its T/t positions";
      return "under sequence parallelism the non-GEMM regions hold T/t positions: rank r has "
             "positions [r·T/t, (r+1)·T/t) of every sequence. LayerNorm, dropout and the residual "
             "are per token, so they run on that shard and keep it sharded(dim 1); only the GEMM "
             "regions need every position (Korthikanti et al. 2022, §4.2.2)";
    case BlockTensor::CAttnInput:
      return "gather_from_sequence_parallel_region (SP's f: an all-gather over T) gives every rank "
             "all T positions: replicated — a column-parallel GEMM multiplies every token by its "
             "columns, so it needs every token";
    case BlockTensor::CAttnOut:
    case BlockTensor::FcOut:
      return "a column-parallel output is sharded along its last dim: rank r computes its own "
             "columns (for c_attn, q|k|v of its n_head/t heads) for EVERY position of the "
             "gathered input — complete values, no sum owed";
    case BlockTensor::AttnOut:
      return "attention runs per head: each rank attends with its n_head/t heads over all T "
             "positions, so its output is its heads' C/t features: sharded along the last dim, "
             "with no communication";
    case BlockTensor::GeluOut:
      return "GELU is elementwise: it keeps its input's placement, sharded along the last dim "
             "(only a partial input would be wrong for a nonlinear op, and c_fc's output is not "
             "partial)";
    case BlockTensor::AttnProjPartial:
    case BlockTensor::MlpProjPartial:
      return "the row-parallel output is a partial sum until "
             "reduce_scatter_to_sequence_parallel_region (Megatron's g): each rank multiplies its "
             "in/t input features by its rows of W, and only the ranks' products added up give "
             "x·W. Treating it as replicated is the skipped all-reduce: each rank would go on "
             "with 1/t of the sum";
    case BlockTensor::AttnProjReduced:
    case BlockTensor::MlpProjReduced:
      if (said.is(Kind::Partial))
        return "the reduce-scatter IS the reduction: rank r receives its T/t positions fully "
               "summed, so nothing is owed any more: sharded(dim 1)";
      return "without SP, g is an all-reduce and leaves the output replicated; under SP g is a "
             "reduce-scatter (reduce_scatter_to_sequence_parallel_region), which leaves each rank "
             "the SUM at its own T/t positions: sharded(dim 1), ready for the per-token residual";
    case BlockTensor::CAttnWeight:
    case BlockTensor::CAttnBias:
      return "column-parallel: the Conv1D weight [in, out] is cut along out (its last dim; the "
             "bias [out] alike) — for c_attn by heads, rank r keeping q, k and v of its n_head/t "
             "heads (parallel/tp/shard.h)";
    case BlockTensor::AttnProjWeight:
      return "row-parallel: the Conv1D weight [in, out] is cut along in (dim 0), matching the "
             "column layer before it, whose output features this rank holds (Megatron splits "
             "dim 1 of its [out, in] weight: the same rows of the math)";
    case BlockTensor::AttnProjBias:
      return "the row-parallel bias is replicated and added once, after the reduction: added on "
             "every rank before it, it would be counted t times";
    case BlockTensor::Ln1Weight:
      return "LayerNorm's weight is replicated over tp: every rank normalizes whole C-feature "
             "rows (of its T/t positions under SP)";
    case BlockTensor::CAttnWeightGrad:
    case BlockTensor::AttnProjWeightGrad:
      return "a tp-sharded weight's gradient is sharded like the weight, and complete: its GEMM "
             "saw every position (the gathered input; the all-gathered output gradient), so no "
             "sum over tp is owed";
    case BlockTensor::AttnProjBiasGrad:
    case BlockTensor::Ln1WeightGrad:
      if (said.is(Kind::Replicated))
        return "under SP each rank's copy saw only its T/t positions, so its gradient is a "
               "partial sum over tokens: allreduce_sequence_parallel_grads must SUM it over tp "
               "before the optimizer (Megatron's finalize_model_grads). Forgotten, each copy "
               "trains on 1/t of the tokens and the copies drift apart (GPT-NeoX PR #1257)";
      return "the parameter is replicated, but under SP its gradient is a sum over the tokens "
             "of THIS rank only: partial(sum), until allreduce_sequence_parallel_grads sums it";
  }
  return "";
}

}  // namespace lesson17
