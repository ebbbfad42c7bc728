// The per-rank memory of a run with tensor parallelism, measured beside its
// formulas: the parameters one tp rank holds (Shoeybi et al. 2019: the split
// matrices Ψ_split/t, the replicated tensors whole) and the activations one
// layer keeps for backward (Korthikanti et al. 2022, activation_memory.h).
// What `minispeed train` prints under its ZeRO table (parallel/zero/memory.h
// counts model states over dp; this adds the tp dimension and activations).
#pragma once
#include <cstdint>
#include <string>

#include "nn/gpt.h"
#include "parallel/comm/communicator.h"
#include "parallel/tp/activation_memory.h"

namespace ms {

// Parameters of one tp rank, split by kind. From a config (the formula) or
// from a model's tensors (measured).
struct TpParamSplit {
  int64_t split = 0;       // elements of the split tensors this rank holds
  int64_t replicated = 0;  // LayerNorms, row-parallel (c_proj) biases, wpe, ln_f: whole
  int64_t total() const { return split + replicated; }
};

// The formula: split = (V·C + L·(12C² + 7C)) / t, replicated = T_max·C + L·6C + 2C
// (wpe, per block ln_1, ln_2 and both c_proj biases, ln_f). Errors name the
// config value t does not divide.
TpParamSplit tp_param_split(const GPTConfig& cfg, int64_t tp);

// Measured: the numel of the model's parameters by tp_split_of(name). Call it
// before ZeRO-3 releases the blocks' parameters.
TpParamSplit held_param_split(const GPT& model);

// Measured: the bytes the allocator's counter (cpu_bytes_allocated) grows by
// while `layer` — a Block, or the TpBlock wrapping one — runs forward with
// autograd on a (B, tokens, n_embd) input, plus the input's own bytes (the
// count has ln_1 save it): what backward keeps for one layer and the layer's
// output. A TpBlock's forward is a collective over its tp group. The layer's
// dropout generators (nn/checkpointed_block.h's dropout_generators) are put
// back afterwards, so the run draws the masks it would have drawn without the
// measurement.
int64_t measure_block_activation_bytes(Layer& layer, int64_t n_embd, int64_t B, int64_t tokens);

// Both measurements of one layer, by measure_block_activation_bytes's method:
// without activation checkpointing and with it (the layer inside a
// CheckpointedBlock, nn/checkpointed_block.h). Given a CheckpointedBlock it
// measures the block inside for `plain`; given anything else it wraps it for
// the measurement only. Collective over a TpBlock's tp group, like the forward.
struct LayerActivationBytes {
  int64_t plain = 0;                 // what backward keeps without checkpointing
  int64_t checkpointed = 0;          // with: the block's input (+ its output, as above)
  bool checkpointed_in_run = false;  // the layer given was a CheckpointedBlock
};
LayerActivationBytes measure_layer_activations(Layer& layer, int64_t n_embd, int64_t B,
                                               int64_t tokens);

// Collective over `world`: the lines printed under the memory table — the
// parameters per tp rank (formula, then each rank's measured split) and one
// layer's activations (measured beside the count for this run, and the count
// for the other modes at the same shape), then the same layer under activation
// checkpointing (measured beside checkpointed_block_activations, the saving,
// and its price: one more forward per block). `one_sequence` is this rank's
// measure_layer_activations at B = 1, compared ×
// shape.batch: every term of the count grows with the batch (the samples of
// a batch never mix), and a probe at the run's whole batch would cost a
// layer's activations before training starts — an out-of-memory there
// instead of in the training step it belongs to. `shape` is this run's.
std::string tp_memory_report(Communicator& world, const GPTConfig& cfg, const TpParamSplit& held,
                             const LayerActivationBytes& one_sequence,
                             const ActivationShape& shape);

}  // namespace ms
