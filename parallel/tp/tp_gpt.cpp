// The tensor-parallel GPT: the serial model cut to shards, run by the
// Megatron recipe (tp_gpt.h).
#include "parallel/tp/tp_gpt.h"

#include "autograd/grad_mode.h"
#include "parallel/comm/placement.h"
#include "parallel/tp/cross_entropy.h"
#include "parallel/tp/linear.h"
#include "parallel/tp/random.h"
#include "parallel/tp/sequence_parallel.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/vocab_parallel.h"

namespace ms {

TpBlock::TpBlock(std::shared_ptr<Block> block, Communicator tp, bool sequence_parallel,
                 int64_t n_head)
    : block_(register_module("", std::move(block))),
      tp_(std::move(tp)),
      sp_(sequence_parallel),
      local_heads_(n_head / tp_.size()) {
  // Megatron's model-parallel stream for dropout inside the tp region (tp_gpt.h).
  Generator& attn = block_->attn->attn_dropout->generator();
  attn = Generator(attn.seed_state() + kModelParallelSeedOffset + uint64_t(tp_.rank()));
  // "h.3" from the parameter names TpGPT labelled its shards with.
  const std::string& w = block_->attn->c_proj->weight.impl()->placements.label;
  name_ = w.substr(0, w.find(".attn."));
}

// Outside the tp regions: without SP every tp rank holds the whole activation
// and the serial generator, so ms::dropout draws the serial mask on each;
// under SP a rank holds T/t positions and keeps its slice of that mask.
Tensor TpBlock::drop(Dropout& d, const Tensor& x) {
  if (!d.training()) return x;
  if (shard_ops_.dropout) return shard_ops_.dropout(x, d.p(), d.generator());
  return sp_ ? sequence_parallel_dropout(x, d.p(), d.generator(), tp_) : d.forward(x);
}

// Block::forward with the column/row pairs of Shoeybi et al. §3 (Fig. 3):
// one all-reduce (or all-gather + reduce-scatter under SP) per pair each way.
Tensor TpBlock::forward(const Tensor& x) {
  Block& b = *block_;
  CausalSelfAttention& attn = *b.attn;
  MLP& mlp = *b.mlp;
  // Under SP the LayerNorm outputs stay sharded for backward (Korthikanti §4.2.2).
  const ColumnParallelOptions col{.sequence_parallel = sp_, .regather_in_backward = sp_};
  const RowParallelOptions row{.sequence_parallel = sp_};
  Tensor qkv = column_parallel_linear(b.ln_1->forward(x), attn.c_attn->weight, attn.c_attn->bias,
                                      tp_, col);  // (B, T, 3C/t): my heads' q|k|v
  Dropout& ad = *attn.attn_dropout;               // this rank's stream (constructor)
  const double attn_p = ad.training() ? ad.p() : 0.0;
  Tensor y = shard_ops_.attention
                 ? shard_ops_.attention(qkv, local_heads_, attn_p, ad.generator())
                 : causal_attention(qkv, local_heads_, attn_p, ad.generator());  // (B, T, C/t)
  // Placements (docs/architecture.md, "Placements"): the attention output is
  // this rank's heads, sharded along the features like the qkv it came from;
  // the residual stream stays replicated over tp (sharded along T under SP),
  // and its adds refuse a row-parallel output whose reduction was skipped.
  const bool placing = tp_.size() > 1 && placement_checks_enabled();
  if (placing && placement_of(x, MeshAxis::TP).is(Placement::Kind::Unknown))
    // An input no tp op produced (a pipeline stage's received activation, the
    // CLI's activation-memory probe) is what this block's input is by
    // contract: the residual stream. Known placements are left to the checks.
    place_over(x, MeshAxis::TP, tp_, sp_ ? Placement::sharded(1, x.dim()) : Placement::replicated(),
               name_ + " input (the residual stream)");
  if (placing)
    place_over(y, MeshAxis::TP, tp_, Placement::sharded(-1, y.dim()),
               name_ + " attention output (this rank's heads)");
  Tensor h1 = add(x, drop(*attn.resid_dropout, row_parallel_linear(y, attn.c_proj->weight,
                                                                   attn.c_proj->bias, tp_, row)));
  if (placing) set_label(h1, name_ + " residual stream (after attention)");
  Tensor f = column_parallel_linear(b.ln_2->forward(h1), mlp.c_fc->weight, mlp.c_fc->bias, tp_,
                                    col);  // (B, T, 4C/t)
  Tensor out = add(h1, drop(*mlp.dropout, row_parallel_linear(gelu(f), mlp.c_proj->weight,
                                                              mlp.c_proj->bias, tp_, row)));
  if (placing) set_label(out, name_ + " residual stream (after the MLP)");
  return out;
}

TpGPT::TpGPT(std::shared_ptr<GPT> serial, Communicator tp, bool sequence_parallel)
    : gpt_(register_module("", std::move(serial))), tp_(std::move(tp)), sp_(sequence_parallel) {
  const GPTConfig& cfg = gpt_->config();
  const int t = tp_.size();
  // Checked before anything is cut, naming the config: shard_param's own
  // errors would name one tensor.
  MS_CHECK(cfg.n_head % t == 0, "tensor parallelism: n_head ", cfg.n_head,
           " is not divisible by tp ", t, " (each tp rank computes n_head / tp whole heads)");
  MS_CHECK(cfg.vocab_size % t == 0, "tensor parallelism: vocab_size ", cfg.vocab_size,
           " is not divisible by tp ", t, " (each tp rank owns vocab_size / tp rows of wte)");
  for (const auto& [name, full] : gpt_->named_parameters()) {
    const TpSplit split = tp_split_of(name);
    gpt_->replace_parameter(name, shard_param(full, split, tp_.rank(), t, cfg.n_head, name));
    place_tp_param(full, split, tp_, name);  // `full` is the parameter, now at shard shape
  }
  for (size_t i = 0; i < gpt_->blocks().size(); ++i) {
    auto block = std::dynamic_pointer_cast<Block>(gpt_->blocks()[i]);
    MS_CHECK(block != nullptr, "tensor parallelism: block ", i,
             " is already wrapped; cut the serial model before anything wraps its blocks");
    gpt_->replace_block(i, std::make_shared<TpBlock>(block, tp_, sp_, cfg.n_head));
  }
}

// GPT::embed, vocab-parallel (Megatron VocabParallelEmbedding); under SP the
// sum is reduce-scattered and each rank adds the wpe rows of its positions.
Tensor TpGPT::embed(const Tensor& idx) {
  const GPTConfig& cfg = gpt_->config();
  MS_CHECK(idx.dim() == 2 && idx.dtype() == DType::I32,
           "TpGPT.forward: tokens must be i32 (B, T), got ", shape_str(idx.shape()), " ",
           dtype_name(idx.dtype()));
  const int64_t T = idx.shape()[1], t = tp_.size();
  MS_CHECK(T <= cfg.block_size, "TpGPT.forward: sequence length ", T,
           " exceeds the model's block_size ", cfg.block_size);
  MS_CHECK(!sp_ || T % t == 0, "TpGPT.forward: sequence parallelism splits the sequence length ", T,
           " over tp ", t, ", which does not divide it");
  // Under SP the replicated parameters' gradients leave backward partial over
  // tp until the sequence-parallel grad sum (sequence_parallel.h). The hooks
  // that mark them are registered at the first forward, after those of a
  // data-parallel wrapper built since (DataParallel moves .grad into its
  // bucket in its hook): they then mark the gradient that stays.
  if (sp_ && !sp_grads_placed_) {
    std::vector<std::pair<std::string, Tensor>> replicated;
    for (const auto& [name, p] : gpt_->named_parameters())
      if (tp_split_of(name) == TpSplit::Replicated) replicated.emplace_back(name, p);
    place_sequence_parallel_grads_on_backward(replicated, tp_);
    sp_grads_placed_ = true;
  }
  const int64_t n = sp_ ? T / t : T, first = sp_ ? tp_.rank() * n : 0;
  Tensor pos = arange(double(first), double(first + n), 1, DType::I32).to(idx.device());
  Tensor x = add(vocab_parallel_embedding(gpt_->wte->weight, idx, tp_, sp_),
                 gpt_->wpe->forward(pos));  // (B, n, C): replicated over tp, sharded(1) under SP
  if (t > 1) set_label(x, "residual stream (embedding output)");
  Dropout& d = *gpt_->drop;
  if (!d.training()) return x;
  return sp_ ? sequence_parallel_dropout(x, d.p(), d.generator(), tp_) : d.forward(x);
}

// GPT::head_loss with the tied head kept vocab-parallel (Megatron's
// parallel_output=True into vocab_parallel_cross_entropy).
Tensor TpGPT::head_loss(const Tensor& x, const Tensor& targets) {
  const int64_t local_vocab = gpt_->config().vocab_size / tp_.size();
  Tensor logits = vocab_parallel_logits(gpt_->ln_f->forward(x), gpt_->wte->weight, tp_,
                                        sp_);  // (B, T, V/t): sharded(-1) over tp
  return vocab_parallel_cross_entropy(reshape(logits, {-1, local_vocab}), reshape(targets, {-1}),
                                      tp_);  // sets the (B·T, V/t) view's placement again
}

Tensor TpGPT::loss(const Tensor& idx, const Tensor& targets) {
  Tensor x = embed(idx);
  for (const auto& block : gpt_->blocks())
    x = block->forward(x);  // TpBlocks (maybe ZeRO-3-wrapped)
  return head_loss(x, targets);
}

std::vector<bool> TpGPT::replicated_mask() const {
  std::vector<bool> out;
  for (const auto& [name, p] : gpt_->named_parameters())
    out.push_back(tp_split_of(name) == TpSplit::Replicated);
  return out;
}

std::shared_ptr<GPT> TpGPT::gather_serial() {
  NoGradGuard no_grad;
  auto serial = std::make_shared<GPT>(gpt_->config(), 0);
  for (const auto& [name, shard] : gpt_->named_parameters()) {
    Tensor dst = serial->parameter(name);
    copy_(dst, gather_param(shard, tp_split_of(name), tp_));
  }
  return serial;
}

// wte's rows; per block c_attn's and c_fc's columns (weights and biases) and
// both c_proj weights' rows are split (12C² + 7C elements), while the
// LayerNorms and the c_proj biases are whole (6C); wpe and ln_f are whole.
int64_t tp_parameter_count(const GPTConfig& m, int64_t tp) {
  MS_CHECK(tp >= 1, "tp_parameter_count: tp ", tp, " must be >= 1");
  const int64_t C = m.n_embd;
  const int64_t per_block = 12 * C * C / tp + 7 * C / tp + 6 * C;
  return m.vocab_size * C / tp + m.block_size * C + m.n_layer * per_block + 2 * C;
}

}  // namespace ms
