// Lesson 17: testing a parallel trainer. You say, for every tensor of one GPT-2
// block run at tp 2 with sequence parallelism (Megatron's layout), how it
// lives on the tp group — replicated, sharded(dim) or partial(sum) — in
// exercise.cpp; check.cpp runs the block for real on 2 ranks and beside it on
// one process, MEASURES each tensor's placement from the numbers, and
// compares.
#pragma once
#include <cstdint>

#include "tensor/placement.h"

// One block, (B, T, C) activations (GPT-2's and llm.c's layout: T is dim 1),
// n_head heads, tp = 2 with sequence parallelism. One process's shapes are in
// brackets; the comment says what the tp rank computes (parallel/tp/linear.h,
// parallel/tp/mappings.h). Conv1D weights are [in, out] (y = x·W + b).
enum class BlockTensor {
  // ---- activations, in the order the forward makes them ----
  Input,            // (B, T, C)  the block's input x, as the previous block left it
  Ln1Out,           // (B, T, C)  ln_1(x)
  CAttnInput,       // (B, T, C)  ln_1's output after gather_from_sequence_parallel_region
  CAttnOut,         // (B, T, 3C) c_attn's output: q|k|v (column-parallel)
  AttnOut,          // (B, T, C)  causal attention's output, heads side by side
  AttnProjPartial,  // (B, T, C)  attn.c_proj's GEMM y·W (row-parallel), before its reduction
  AttnProjReduced,  // (B, T, C)  after reduce_scatter_to_sequence_parallel_region, + bias
  Residual1,        // (B, T, C)  x + attention branch
  Ln2Out,           // (B, T, C)  ln_2 of the residual
  FcOut,            // (B, T, 4C) mlp.c_fc's output (column-parallel, after its all-gathered input)
  GeluOut,          // (B, T, 4C) gelu(c_fc output)
  MlpProjPartial,   // (B, T, C)  mlp.c_proj's GEMM (row-parallel), before its reduction
  MlpProjReduced,   // (B, T, C)  after reduce_scatter_to_sequence_parallel_region, + bias
  Output,           // (B, T, C)  the block's output: residual + MLP branch
  // ---- parameters ----
  CAttnWeight,     // [C, 3C]
  CAttnBias,       // [3C]
  AttnProjWeight,  // [C, C]
  AttnProjBias,    // [C]
  Ln1Weight,       // [C]
  // ---- gradients after backward, before any reduction over tp ----
  CAttnWeightGrad,     // [C, 3C]
  AttnProjWeightGrad,  // [C, C]
  AttnProjBiasGrad,    // [C]
  Ln1WeightGrad,       // [C]
};
constexpr int kBlockTensors = int(BlockTensor::Ln1WeightGrad) + 1;

// TODO (exercise.cpp): the placement over tp of `which`, on ranks whose
// block runs the Megatron recipe with sequence parallelism. Use
//   ms::Placement::replicated()   every rank holds the whole value
//   ms::Placement::sharded(d, n)  rank r holds block r of dim d of the
//                                 n-D one-process tensor (d may be negative:
//                                 -1 is the last dim)
//   ms::Placement::partial()      the value is the SUM of the ranks' tensors
// (tensor/placement.h). A column-parallel layer's q|k|v columns are cut by
// heads (rank r: q, k and v of its n_head/t heads, parallel/tp/shard.h): call
// that sharded along the last dim too — the checker lines one process's
// columns up the same way.
ms::Placement tp_placement(BlockTensor which);
