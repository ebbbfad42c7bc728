#include "nn/gpt.h"

#include "nn/moe.h"

#include <cmath>
#include <utility>

namespace ms {

void GPTConfig::validate() const {
  MS_CHECK(vocab_size > 0, "config: vocab_size must be positive, got ", vocab_size);
  MS_CHECK(block_size > 0, "config: block_size (max positions) must be positive, got ", block_size);
  MS_CHECK(n_layer > 0, "config: n_layer must be positive, got ", n_layer);
  MS_CHECK(n_head > 0, "config: n_head must be positive, got ", n_head);
  MS_CHECK(n_embd > 0 && n_embd % n_head == 0, "config: n_embd ", n_embd,
           " must be a positive multiple of n_head ", n_head);
  MS_CHECK(dropout >= 0 && dropout < 1, "config: dropout ", dropout, " must be in [0, 1)");
  MS_CHECK(attn_dropout >= 0 && attn_dropout < 1, "config: attn_dropout ", attn_dropout,
           " must be in [0, 1)");
  moe.validate();
  MS_CHECK(!moe.enabled() || moe.every <= n_layer, "config: moe.every ", moe.every,
           " exceeds n_layer ", n_layer, ": no block would hold experts");
}

std::string GPTConfig::describe() const {
  return str_cat("GPT(n_layer=", n_layer, ", n_head=", n_head, ", n_embd=", n_embd,
                 ", block_size=", block_size, ", vocab_size=", vocab_size, moe.enabled() ? ", " + moe.describe() : "", ")");
}

CausalSelfAttention::CausalSelfAttention(const GPTConfig& cfg, Generator& gen)
    : n_head_(cfg.n_head) {
  double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  c_attn =
      register_module("c_attn", std::make_shared<Linear>(cfg.n_embd, 3 * cfg.n_embd, true, gen));
  c_proj = register_module("c_proj",
                           std::make_shared<Linear>(cfg.n_embd, cfg.n_embd, true, gen, resid_std));
  const uint64_t resid_seed = gen.next_u64();
  // Its own stream, derived from resid_dropout's seed so the weights' init
  // stream (and so every existing seed's weights) is unchanged.
  attn_dropout = register_module(
      "attn_dropout",
      std::make_shared<Dropout>(cfg.attn_dropout, Generator(~resid_seed).next_u64()));
  resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(cfg.dropout, resid_seed));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  Tensor qkv = c_attn->forward(x);  // (B, T, 3C)
  Dropout& d = *attn_dropout;
  Tensor y = causal_attention(qkv, n_head_, d.training() ? d.p() : 0.0, d.generator());  // (B, T, C)
  return resid_dropout->forward(c_proj->forward(y));
}

MLP::MLP(const GPTConfig& cfg, Generator& gen) {
  double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  c_fc = register_module("c_fc", std::make_shared<Linear>(cfg.n_embd, 4 * cfg.n_embd, true, gen));
  c_proj = register_module(
      "c_proj", std::make_shared<Linear>(4 * cfg.n_embd, cfg.n_embd, true, gen, resid_std));
  dropout = register_module("dropout", std::make_shared<Dropout>(cfg.dropout, gen.next_u64()));
}

Tensor MLP::forward(const Tensor& x) {
  // GELU stays its own pass: taken in c_fc's GEMM epilogue (tile rows or MR-row
  // strips) it ran 2-9% slower than GEMM + pass on the Zen 4 this was measured
  // on, as writing the GELU output mid-GEMM evicts the packed B block from L2.
  return dropout->forward(c_proj->forward(gelu(c_fc->forward(x))));  // (B,T,C)->(B,T,4C)->(B,T,C)
}

Block::Block(const GPTConfig& cfg, Generator& gen, bool with_moe) {
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(cfg.n_embd));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(cfg, gen));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(cfg.n_embd));
  if (with_moe)
    moe = register_module("mlp", std::make_shared<MoE>(cfg, gen));
  else
    mlp = register_module("mlp", std::make_shared<MLP>(cfg, gen));
}

Tensor Block::forward(const Tensor& x) {
  Tensor h1 = add(x, attn->forward(ln_1->forward(x)));
  Tensor h2 = ln_2->forward(h1);
  return add(h1, moe ? moe->forward(h2) : mlp->forward(h2));
}

GPT::GPT(const GPTConfig& cfg, uint64_t seed) : cfg_(cfg) {
  cfg.validate();
  Generator gen(seed);
  wte = register_module("wte", std::make_shared<Embedding>(cfg.vocab_size, cfg.n_embd, gen));
  wpe = register_module("wpe", std::make_shared<Embedding>(cfg.block_size, cfg.n_embd, gen));
  for (int64_t i = 0; i < cfg.n_layer; ++i)
    blocks_.push_back(register_module("h." + std::to_string(i), std::make_shared<Block>(cfg, gen, cfg.moe.is_moe_block(i))));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(cfg.n_embd));
  // Registered like every child, so train(false) reaches it (eval = no dropout).
  drop = register_module("drop", std::make_shared<Dropout>(cfg.dropout, gen.next_u64()));
}

Tensor GPT::embed(const Tensor& idx) {
  MS_CHECK(idx.dim() == 2 && idx.dtype() == DType::I32,
           "GPT.forward: tokens must be i32 (B, T), got ", shape_str(idx.shape()), " ",
           dtype_name(idx.dtype()));
  int64_t T = idx.shape()[1];
  MS_CHECK(T <= cfg_.block_size, "GPT.forward: sequence length ", T,
           " exceeds the model's block_size ", cfg_.block_size);
  Tensor pos = arange(T, DType::I32).to(idx.device());  // (T), beside the tokens
  return drop->forward(add(wte->forward(idx), wpe->forward(pos)));  // (B, T, C) + (T, C)
}

Tensor GPT::run_blocks(Tensor x) {
  for (auto& block : blocks_) x = block->forward(x);
  return x;
}

Tensor GPT::head(const Tensor& x) {
  // Tied head: logits = ln_f(x) · wteᵀ, a transposed view that GEMM reads in place.
  return linear(ln_f->forward(x), transpose(wte->weight, 0, 1));  // (B, T, V)
}

Tensor GPT::head_loss(const Tensor& x, const Tensor& targets) {
  Tensor logits = head(x);
  int64_t V = cfg_.vocab_size;
  return add_aux_losses(cross_entropy(reshape(logits, {-1, V}), reshape(targets, {-1})));
}

Tensor GPT::add_aux_losses(Tensor loss) {
  if (!cfg_.moe.enabled()) return loss;
  for (Module* m : modules()) {
    auto* moe = dynamic_cast<MoE*>(m);
    if (moe == nullptr) continue;
    Tensor aux = moe->take_aux_loss();  // taken in eval too, so none is left over
    if (aux.defined() && training() && cfg_.moe.aux_loss_coef != 0)
      loss = add(loss, mul(ms::to(aux, loss.dtype()), cfg_.moe.aux_loss_coef));
  }
  return loss;
}

Tensor GPT::forward(const Tensor& idx) {
  Tensor logits = head(run_blocks(embed(idx)));
  for (Module* m : modules())  // no loss here to add the MoE layers' l_aux to
    if (auto* moe = dynamic_cast<MoE*>(m)) moe->take_aux_loss();
  return logits;
}

Tensor GPT::loss(const Tensor& idx, const Tensor& targets) {
  return head_loss(run_blocks(embed(idx)), targets);
}

std::shared_ptr<Layer> GPT::replace_block(size_t i, std::shared_ptr<Layer> layer) {
  MS_CHECK(i < blocks_.size(), "GPT.replace_block: block ", i, " does not exist (the model has ",
           blocks_.size(), ")");
  MS_CHECK(layer != nullptr, "GPT.replace_block: block ", i, " replaced by nothing");
  replace_module("h." + std::to_string(i), layer);
  return std::exchange(blocks_[i], std::move(layer));
}

}  // namespace ms
