// A tensor-parallel GPT-2 (Shoeybi et al. 2019; Korthikanti et al. 2022 with
// sequence parallelism), built FROM the serial GPT (nn/gpt.h) by cutting it:
// every rank builds the same serial model (fresh from the run's seed, or
// --init-from a file), and each parameter is replaced in place
// (Module::replace_parameter) by this tp rank's shard (shard.h) — Megatron's
// _initialize_affine_weight_cpu: the full master weight from one seed, each
// rank keeps its chunk. So a tp run starts from exactly the serial model.
//
// What stays the same: the GPT object, its Hugging Face parameter names and
// their order, now at shard shapes. So the optimizer, FlatParams and every
// ZeRO stage run on gpt() unchanged over the dp group (ZeRO-3 wraps the tp
// blocks like any block). What changes: each block is replaced
// (GPT::replace_block) by a TpBlock that runs the Megatron recipe on the
// block's own (sharded) parameters, and the embedding and the head go through
// loss() here instead of GPT::loss:
//   embed  vocab-parallel embedding (+ wpe, this rank's positions under SP)
//   block  LN → column c_attn (q|k|v by heads) → attention on n_head/t heads
//          → row c_proj → dropout → residual; LN → column c_fc → GELU → row
//          c_proj → dropout → residual
//   head   ln_f → tied vocab-parallel logits (B, T, V/t) → vocab-parallel
//          cross-entropy: no rank ever holds (B, T, V)
// tests/mpi/test_tp_gpt.cpp assembles the same recipe from the pieces.
//
// Dropout (random.h): the GPT's dropouts act outside the tp regions, on
// replicated activations; every tp rank holds the serial model's generators,
// so without SP they draw the serial masks. Under SP each rank holds T/t
// positions and sequence_parallel_dropout keeps its slice of the serial mask.
// Attention dropout (attn_dropout) is the exception: it acts on this rank's
// own heads, inside the tp region, so each TpBlock reseeds that generator to
// its seed + 2718 + tp_rank (Megatron's 'model-parallel-rng', which its
// attention dropout runs under get_cuda_rng_tracker().fork()). Ranks then
// drop different entries of their different heads, and a tp run's attention
// masks are NOT the serial model's (as in Megatron): with attn_dropout > 0 a
// tp run matches one process in distribution, not bit for bit.
//
// Under SP the column layers keep only their (B, T/t, C) input and
// all-gather it again in backward (linear.h regather_in_backward), as
// Megatron's LinearWithGradAccumulationAndAsyncCommunication does.
//
// After backward, under SP, the replicated parameters' gradients (LayerNorms,
// row-parallel biases, wpe) are partial sums over this rank's tokens and must
// be summed over tp; ZeroOptimizer does it when given replicated_mask()
// (zero_optimizer.h, ZeroTensorParallel), after its dp reduction, as
// Megatron's finalize_model_grads does (the two sums commute).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "parallel/comm/communicator.h"

namespace ms {

// How a block's attention and output dropouts run when another parallelism
// shards the sequence too (context parallelism, parallel/cp/cp_gpt.h): the
// attention of this rank's heads over its positions, and the dropout of an
// activation holding its positions. Unset members: the tp recipe.
struct SequenceShardOps {
  // qkv (B, n, 3C/t) of `heads` heads -> (B, n, C/t).
  std::function<Tensor(const Tensor& qkv, int64_t heads, double attn_p, Generator& gen)> attention;
  // x (B, n, C): the serial mask's entries at this rank's positions.
  std::function<Tensor(const Tensor& x, double p, Generator& gen)> dropout;
};

// Block i of a tp model: holds the serial Block (sharded) as an unnamed child,
// so its parameters keep the names "h.i....".
class TpBlock : public Layer {
 public:
  TpBlock(std::shared_ptr<Block> block, Communicator tp, bool sequence_parallel, int64_t n_head);
  // (B, T, C) -> (B, T, C); under SP (B, T/t, C) -> (B, T/t, C).
  Tensor forward(const Tensor& x) override;
  void set_sequence_shard_ops(SequenceShardOps ops) { shard_ops_ = std::move(ops); }

 private:
  Tensor drop(Dropout& d, const Tensor& x);
  SequenceShardOps shard_ops_;
  std::shared_ptr<Block> block_;
  Communicator tp_;
  bool sp_;
  int64_t local_heads_;  // n_head / t
  std::string name_;     // "h.i", for the placement labels of its activations
};

class TpGPT : public Module {
 public:
  // Cuts `serial` (which becomes this model's gpt(); do not use it as a
  // serial model afterwards) into tp rank `tp.rank()`'s shards. Not a
  // collective. An ms::Error names the config value and tp when a split is
  // not even: n_head % tp, vocab_size % tp.
  TpGPT(std::shared_ptr<GPT> serial, Communicator tp, bool sequence_parallel);

  // The wrapped model at shard shapes: what an optimizer / ZeroOptimizer
  // trains. Its forward()/loss() are the serial ones and fail on shards: use
  // loss() here.
  GPT& gpt() { return *gpt_; }
  const std::shared_ptr<GPT>& gpt_handle() const { return gpt_; }  // for a wrapper (cp_gpt.h)
  const GPTConfig& config() const { return gpt_->config(); }
  Communicator& tp() { return tp_; }
  bool sequence_parallel() const { return sp_; }

  // Collective over tp: i32 (B, T) -> the mean cross-entropy, the same on
  // every tp rank (all read the same batch). Under SP, T % tp == 0.
  Tensor loss(const Tensor& idx, const Tensor& targets);
  Tensor embed(const Tensor& idx);                           // -> (B, T or T/t, C)
  Tensor head_loss(const Tensor& x, const Tensor& targets);  // x from the blocks

  // Per gpt().parameters() index: true where every tp rank holds the whole
  // tensor (tp_split_of == Replicated).
  std::vector<bool> replicated_mask() const;

  // Collective over tp: a new serial GPT holding the gathered parameters
  // (shard.h gather_param): for --save-weights and sampling. Under ZeRO-3,
  // gather the dp shards first (ZeroOptimizer::gather_full_parameters).
  std::shared_ptr<GPT> gather_serial();

 private:
  std::shared_ptr<GPT> gpt_;
  Communicator tp_;
  bool sp_;
  bool sp_grads_placed_ = false;  // the SP gradient hooks are registered (embed)
};

// Parameters one tp rank of a TpGPT with this config holds (its shards and the
// replicated tensors, shard.h's table), without building it: for memory
// checks before allocation. The config's serial count must fit int64.
int64_t tp_parameter_count(const GPTConfig& cfg, int64_t tp);

}  // namespace ms
