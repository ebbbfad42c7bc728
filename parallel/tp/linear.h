// Column- and row-parallel linear layers (Shoeybi et al. 2019, §3; Megatron-LM
// megatron/core/tensor_parallel/layers.py::ColumnParallelLinear and
// ::RowParallelLinear) on GPT-2's Conv1D layout: weight [in, out], y = x·W + b.
//
// Conv1D is the transpose of torch.nn.Linear's [out, in], so the split dims
// flip relative to Megatron's code (which splits its weight dim 0 for column
// and dim 1 for row):
//   column-parallel: W [in, out/t] (dim 1 split), bias [out/t] split alike;
//     input replicated, output is this rank's slice of the features.
//   row-parallel:    W [in/t, out] (dim 0 split), bias [out] REPLICATED and
//     added once, after the reduction: adding it on every rank before the
//     all-reduce would add it t times.
// Column then row (MLP c_fc → c_proj; attention c_attn → c_proj) needs one
// all-reduce forward (g after the row layer) and one backward (f before the
// column layer): no communication in between.
//
// Sequence parallelism (Korthikanti et al. 2022, §4.2.2) swaps f for an
// all-gather over T (input arrives as (B, T/t, C)) and g for a reduce-scatter
// over T (output leaves as (B, T/t, C)); the same bytes on the wire.
// Under SP the row bias's gradient is a partial sum over this rank's tokens
// and must be summed over tp like the LayerNorms' (sequence_parallel.h).
//
// The weights are ordinary tensors (a Linear's, after shard.h cut them), so
// these are functions, not Modules: the GPT keeps its parameters and calls
// these in place of linear().
#pragma once
#include "parallel/comm/communicator.h"
#include "tensor/tensor.h"

namespace ms {

struct ColumnParallelOptions {
  bool sequence_parallel = false;  // input (B, T/t, in): all-gather over T instead of f
  bool gather_output = false;      // all-gather the output features (not with SP)
  // Under SP: keep only the (B, T/t, in) input for backward and all-gather it
  // again there (Megatron's LinearWithGradAccumulationAndAsyncCommunication),
  // instead of holding the gathered (B, T, in) — what makes SP's activation
  // memory Korthikanti's (sbh/t)(34 + 5as/h), at one more all-gather of
  // B·T·in per layer in backward. TpGPT turns it on under SP (its blocks and
  // the tied head). Off: the gathered input is saved, and the backward traffic
  // equals the all-reduce it replaces.
  bool regather_in_backward = false;
};

struct RowParallelOptions {
  bool sequence_parallel = false;  // reduce-scatter over T instead of g: output (B, T/t, out)
  bool input_is_parallel = true;   // x already holds this rank's in/t features; else split it
};

// x (B, T, in) [or (B, T/t, in) under SP] · weight (in, out/t) + bias (out/t)
//   -> (B, T, out/t) [or (B, T, out) with gather_output].
Tensor column_parallel_linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Communicator& tp, const ColumnParallelOptions& opt = {});

// x (B, T, in/t) · weight (in/t, out), summed over tp, + bias (out)
//   -> (B, T, out) [or (B, T/t, out) under SP].
Tensor row_parallel_linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Communicator& tp, const RowParallelOptions& opt = {});

}  // namespace ms
