// GPT-2 (Radford et al. 2019): learned positions, pre-LN blocks, final
// LayerNorm, LM head tied to the token embedding. Parameter names and layouts
// are Hugging Face's, so safetensors files move between minispeed and PyTorch.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/moe_config.h"

namespace ms {

struct GPTConfig {
  int64_t vocab_size = 256;  // bytes
  int64_t block_size = 128;  // max positions
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_embd = 128;
  double dropout = 0.0;       // residual and embedding dropout (HF resid_pdrop, embd_pdrop)
  // Dropout on the attention probabilities (HF attn_pdrop), after softmax and
  // before ·v. 0 by default, so a run changes only when asked (HF's
  // GPT2Config defaults all three to 0.1).
  double attn_dropout = 0.0;
  MoEConfig moe;  // experts in every moe.every-th block's MLP (nn/moe.h); off by default
  // Throws ms::Error naming the field and the rule when the config is unusable.
  void validate() const;
  std::string describe() const;
};

class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(const GPTConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x);  // (B, T, C) -> (B, T, C)
  std::shared_ptr<Linear> c_attn;   // C -> 3C, packed q|k|v
  std::shared_ptr<Linear> c_proj;   // C -> C
  std::shared_ptr<Dropout> attn_dropout;  // on the softmax probabilities (HF attn_dropout)
  std::shared_ptr<Dropout> resid_dropout;

 private:
  int64_t n_head_;
};

class MLP : public Module {
 public:
  MLP(const GPTConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x);
  std::shared_ptr<Linear> c_fc;    // C -> 4C
  std::shared_ptr<Linear> c_proj;  // 4C -> C
  std::shared_ptr<Dropout> dropout;
};

// One layer of the GPT's stack, (B, T, C) -> (B, T, C): the unit that code
// outside the model wraps or assigns. Block is the real one; a wrapper (ZeRO-3
// gathering a block's parameters around its run, as FSDP wraps submodules;
// later activation checkpointing) is a Layer that holds the block as an unnamed
// child (Module::register_module with name "", so parameter names stay
// "h.i....") and takes its place through GPT::replace_block.
class Layer : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
};

class MoE;

class Block : public Layer {
 public:
  // with_moe: the MLP is a mixture of experts (nn/moe.h), registered under
  // the same name "mlp", and `mlp` stays null.
  Block(const GPTConfig& cfg, Generator& gen, bool with_moe = false);
  Tensor forward(const Tensor& x) override;  // x + attn(ln_1(x)), then + mlp(ln_2(.))
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;  // null in an MoE block
  std::shared_ptr<MoE> moe;  // null in a dense block
};

class GPT : public Module {
 public:
  // GPT-2 initialization: N(0, 0.02) weights, zero biases, and the residual
  // output projections scaled by 1/√(2·n_layer) (each block adds two).
  GPT(const GPTConfig& cfg, uint64_t seed);
  const GPTConfig& config() const { return cfg_; }

  // The model in three parts, so a parallelism runs or splits them from
  // outside (a pipeline's first stage runs embed, its last stage head_loss;
  // ZeRO-3 wraps the blocks): forward = head(blocks(embed(idx))).
  Tensor embed(const Tensor& idx);  // i32 (B, T) -> (B, T, C): wte[idx] + wpe[0..T), dropout
  const std::vector<std::shared_ptr<Layer>>& blocks() const { return blocks_; }
  Tensor head(const Tensor& x);  // (B, T, C) -> logits (B, T, V): ln_f, then the tied wte
  // (B, T, C) and targets (B, T) -> the mean cross-entropy of head(x); in
  // training mode with MoE blocks, plus moe.aux_loss_coef · Σ l_aux of the
  // MoE forwards since the last head_loss (as DeepSpeed's users add the l_aux
  // MoE.forward returns). Eval reports the cross-entropy alone.
  Tensor head_loss(const Tensor& x, const Tensor& targets);

  Tensor forward(const Tensor& idx);  // i32 (B, T) -> logits (B, T, V)
  // Mean cross-entropy of forward(idx) against targets (B, T).
  Tensor loss(const Tensor& idx, const Tensor& targets);

  // Puts `layer` where block i was (under the same name, "h.i") and returns
  // the layer it replaced, so a wrapper can be installed and later undone.
  std::shared_ptr<Layer> replace_block(size_t i, std::shared_ptr<Layer> layer);

  // What from_safetensors cannot read off the tensor shapes.
  struct LoadOptions {
    // Head count (e.g. --n-head). Must divide n_embd and agree with the file's
    // "n_head" metadata if it has one. Unset: the metadata, else GPT-2's
    // 64-wide heads (n_embd / 64, at least 1), a guess reported through `note`.
    std::optional<int64_t> n_head;
    std::string n_head_name = "requested n_head";  // how errors name it, e.g. "--n-head"
    std::optional<double> dropout;                 // the file holds none; unset: 0
    std::optional<double> attn_dropout;            // likewise
    // Receives one-line notes such as the n_head guess. Unset: stderr.
    std::function<void(const std::string&)> note;
    // NaN/Inf weights: one stderr line per tensor, naming it and the count.
    bool warn_non_finite = true;
  };
  // Hugging Face GPT-2 names and [in, out] layouts. The shape comes from the
  // tensors (vocab and width from wte, positions from wpe, depth from the
  // h.<i> blocks); metadata, when present, must agree. Every name and shape is
  // checked before the model is allocated, so a file costs at most about its
  // own size. Accepts a "transformer." prefix; ignores attn.bias /
  // attn.masked_bias / a tied lm_head.
  static std::shared_ptr<GPT> from_safetensors(const std::string& path);
  static std::shared_ptr<GPT> from_safetensors(const std::string& path, const LoadOptions& opts);
  void load_safetensors(const std::string& path);  // into this model's shape
  void save_safetensors(const std::string& path) const;
  // The same file with other values for this model's parameters (every name
  // of named_parameters(), same shapes; e.g. fp32 masters of a 16-bit model).
  void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& values) const;

  std::shared_ptr<Embedding> wte, wpe;
  std::shared_ptr<LayerNorm> ln_f;
  std::shared_ptr<Dropout> drop;  // on the embeddings' sum

 private:
  Tensor run_blocks(Tensor x);
  Tensor add_aux_losses(Tensor loss);

  GPTConfig cfg_;
  std::vector<std::shared_ptr<Layer>> blocks_;  // registered as "h.0", "h.1", ...
};

}  // namespace ms
