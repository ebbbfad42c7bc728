// The GPT under context parallelism (Megatron's --context-parallel-size,
// DeepSpeed-Ulysses' sequence_parallel_size): the C cp ranks of one replica
// read the same window (B, T + 1) and each keeps T/C positions of every
// sequence (cp_positions' order: contiguous blocks, or for zig-zag chunks r
// and 2C−1−r of 2C). Everything but attention is per position, so it runs
// on those positions alone and unchanged:
//   embed   wte[tokens] + wpe at the GLOBAL positions held, dropout
//   block   LN → c_attn → ATTENTION OVER THE WHOLE SEQUENCE (the cp algorithm:
//           Ulysses all-to-all, ring / zig-zag K/V exchange, or the all-gather
//           reference) → c_proj → dropout → residual; LN → MLP → dropout → residual
//   head    ln_f → tied logits → this rank's mean cross-entropy over its B·T/C tokens
// The parameters are replicated over cp, like over dp: ZeroOptimizer averages
// the gradients over the dp×cp group (Mesh::dp_cp()), so with equal token
// counts per rank the mean of the ranks' means is the global batch's mean.
//
// Dropout: each residual / embedding dropout draws the serial (B, T, C) mask
// from the shared stream and keeps this rank's positions (as
// parallel/tp/random.h's sequence_parallel_dropout does for SP): a cp run with
// dropout is the same computation as one process. Attention dropout is the
// algorithm's (the all-gather reference draws the serial masks).
//
// Built FROM the serial model or the tensor-parallel one (TpGPT): with tp the
// TpBlocks keep the Megatron recipe and take the cp attention and dropout
// through TpBlock::set_sequence_shard_ops; Ulysses then splits the n_head/t
// heads of a tp rank over cp (n_head / (t·C) each). Not with pipelines or
// Megatron-SP (refused by the engine).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "parallel/comm/communicator.h"

namespace ms {

class TpGPT;

// Block i under cp without tp: the serial Block (held as an unnamed child, so
// names stay "h.i....") run on this rank's positions.
class CpBlock : public Layer {
 public:
  using Attention = std::function<Tensor(const Tensor&, int64_t, double, Generator&)>;
  using Drop = std::function<Tensor(const Tensor&, double, Generator&)>;
  CpBlock(std::shared_ptr<Block> block, int64_t n_head, Attention attention, Drop drop);
  Tensor forward(const Tensor& x) override;  // (B, T/C, C) -> (B, T/C, C)

 private:
  Tensor drop(Dropout& d, const Tensor& x);
  std::shared_ptr<Block> block_;
  int64_t n_head_;
  Attention attention_;
  Drop drop_;
};

class CpGPT : public Module {
 public:
  // `algo`: "ulysses" | "ring" | "zigzag" | "allgather". With `tp` (the
  // model already cut for tensor parallelism; `serial` is then its gpt()),
  // the TpBlocks are switched to cp; without, each Block is wrapped in a
  // CpBlock. Not a collective. An ms::Error names n_head, tp and cp when
  // Ulysses cannot split the heads.
  CpGPT(std::shared_ptr<GPT> serial, std::shared_ptr<TpGPT> tp, Communicator cp, std::string algo);

  GPT& gpt() { return *gpt_; }
  Communicator& cp() { return cp_; }
  const std::string& algo() const { return algo_; }

  // Global positions this rank holds of a length-T sequence, in local row order.
  std::vector<int64_t> positions(int64_t T) const;
  // (B, T, ...) -> (B, T/C, ...): this rank's positions (a copy).
  Tensor keep_positions(const Tensor& t, int64_t T) const;

  // Without tp: a new serial GPT holding copies of the parameters (the wrapped
  // model's blocks run the cp attention, a collective, so one rank cannot
  // sample with it). Not a collective. Under ZeRO-3 gather the dp shards first.
  std::shared_ptr<GPT> copy_serial() const;

  // Collective over cp (and tp): i32 (B, T) windows, the same on every cp rank
  // of the replica -> this rank's mean cross-entropy over its B·T/C tokens.
  Tensor loss(const Tensor& idx, const Tensor& targets);

 private:
  Tensor embed(const Tensor& idx_local, int64_t T);
  // x (B, T/C, ...) at positions(T): the serial dropout's entries there.
  Tensor drop(const Tensor& x, double p, Generator& gen) const;
  Tensor attention(const Tensor& qkv, int64_t heads, double attn_p, Generator& gen);

  std::shared_ptr<GPT> gpt_;
  std::shared_ptr<TpGPT> tp_;
  Communicator cp_;
  std::string algo_;
  int64_t T_ = 0;  // the sequence length of the forward running now
};

}  // namespace ms
