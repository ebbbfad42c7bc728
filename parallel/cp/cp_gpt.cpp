// The GPT under context parallelism: this rank's positions through the serial
// recipe, attention through the cp algorithm (cp_gpt.h).
#include "parallel/cp/cp_gpt.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "parallel/comm/placement.h"
#include "parallel/cp/cp_attention.h"
#include "parallel/cp/cp_gather_attention.h"
#include "parallel/tp/cross_entropy.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/tp/vocab_parallel.h"
#include "tensor/factory.h"

namespace ms {

namespace {

struct Run {
  int64_t global_start, local_start, length;
};

// Maximal runs of consecutive global positions (one for contiguous blocks,
// two for zig-zag): the pieces a slice or a mask is cut in.
std::vector<Run> runs_of(const std::vector<int64_t>& pos) {
  std::vector<Run> runs;
  for (size_t i = 0; i < pos.size(); ++i) {
    if (!runs.empty() && pos[i] == runs.back().global_start + runs.back().length)
      ++runs.back().length;
    else
      runs.push_back({pos[i], static_cast<int64_t>(i), 1});
  }
  return runs;
}

}  // namespace

CpBlock::CpBlock(std::shared_ptr<Block> block, int64_t n_head, Attention attention, Drop drop)
    : block_(register_module("", std::move(block))),
      n_head_(n_head),
      attention_(std::move(attention)),
      drop_(std::move(drop)) {}

Tensor CpBlock::drop(Dropout& d, const Tensor& x) {
  return d.training() ? drop_(x, d.p(), d.generator()) : x;
}

// Block::forward with attention over the whole sequence (the cp algorithm).
Tensor CpBlock::forward(const Tensor& x) {
  Block& b = *block_;
  CausalSelfAttention& attn = *b.attn;
  Dropout& ad = *attn.attn_dropout;
  Tensor qkv = attn.c_attn->forward(b.ln_1->forward(x));  // (B, T/C, 3C)
  Tensor y = attention_(qkv, n_head_, ad.training() ? ad.p() : 0.0, ad.generator());  // (B, T/C, C)
  Tensor h1 = add(x, drop(*attn.resid_dropout, attn.c_proj->forward(y)));
  MLP& mlp = *b.mlp;
  return add(h1,
             drop(*mlp.dropout, mlp.c_proj->forward(gelu(mlp.c_fc->forward(b.ln_2->forward(h1))))));
}

CpGPT::CpGPT(std::shared_ptr<GPT> serial, std::shared_ptr<TpGPT> tp, Communicator cp,
             std::string algo)
    : gpt_(std::move(serial)), tp_(std::move(tp)), cp_(std::move(cp)), algo_(std::move(algo)) {
  MS_CHECK(algo_ == "ulysses" || algo_ == "ring" || algo_ == "zigzag" || algo_ == "allgather",
           "context parallelism: unknown algorithm '", algo_,
           "' (valid: ulysses, ring, zigzag, allgather)");
  const GPTConfig& cfg = gpt_->config();
  const int64_t t = tp_ ? tp_->tp().size() : 1, C = cp_.size();
  MS_CHECK(algo_ != "ulysses" || cfg.n_head % (t * C) == 0,
           "context parallelism (ulysses): n_head ", cfg.n_head, " is not divisible by tp ", t,
           " × cp ", C, " (after the all-to-all each rank runs n_head / (tp·cp) whole heads)");
  if (tp_)
    register_module("", tp_);
  else
    register_module("", gpt_);
  auto attend = [this](const Tensor& qkv, int64_t heads, double p, Generator& g) {
    return attention(qkv, heads, p, g);
  };
  auto dropper = [this](const Tensor& x, double p, Generator& g) { return drop(x, p, g); };
  for (size_t i = 0; i < gpt_->blocks().size(); ++i) {
    if (tp_) {
      auto block = std::dynamic_pointer_cast<TpBlock>(gpt_->blocks()[i]);
      MS_CHECK(block != nullptr, "context parallelism: block ", i,
               " is not a TpBlock; wrap the model for cp right after the tp cut");
      block->set_sequence_shard_ops({attend, dropper});
    } else {
      auto block = std::dynamic_pointer_cast<Block>(gpt_->blocks()[i]);
      MS_CHECK(block != nullptr, "context parallelism: block ", i,
               " is already wrapped; wrap the serial model for cp before anything else");
      gpt_->replace_block(i, std::make_shared<CpBlock>(block, cfg.n_head, attend, dropper));
    }
  }
}

std::vector<int64_t> CpGPT::positions(int64_t T) const {
  // The all-gather reference holds contiguous blocks, as Ulysses and ring do.
  const CpAlgo layout = algo_ == "allgather" ? CpAlgo::Ulysses : parse_cp_algo(algo_);
  return cp_positions(layout, T, cp_.size(), cp_.rank());
}

Tensor CpGPT::keep_positions(const Tensor& t, int64_t T) const {
  std::vector<Tensor> pieces;
  for (const Run& run : runs_of(positions(T)))
    pieces.push_back(narrow(t, 1, run.global_start, run.length));
  return contiguous(pieces.size() == 1 ? pieces[0] : cat(pieces, 1));
}

Tensor CpGPT::drop(const Tensor& x, double p, Generator& gen) const {
  if (p == 0) return dropout(x, p, gen);  // validates p, draws nothing
  Shape full_shape = x.shape();           // (B, T/C, ...) -> (B, T, ...)
  full_shape[1] = T_;
  // The serial mask, drawn as ms::dropout draws it; this rank applies its entries.
  DropoutMask full = draw_dropout_mask(full_shape, p, gen);
  std::vector<Tensor> pieces;
  for (const Run& run : runs_of(positions(T_)))
    pieces.push_back(apply_dropout_mask(contiguous(narrow(x, 1, run.local_start, run.length)),
                                        slice_dropout_mask(full, run.global_start, run.length)));
  Tensor out = pieces.size() == 1 ? pieces[0] : cat(pieces, 1);
  copy_placements(out, x);  // dropout is linear and keeps the positions: x's placements
  return out;
}

Tensor CpGPT::attention(const Tensor& qkv, int64_t heads, double attn_p, Generator& gen) {
  if (algo_ == "allgather") {
    Tensor out = cp_gather_attention(qkv, heads, cp_, attn_p, gen);
    if (cp_.size() > 1 && placement_checks_enabled()) {
      copy_placements(out, qkv);  // tp: this rank's heads, like its qkv
      place_over(out, MeshAxis::CP, cp_, Placement::sharded(1, out.dim()),
                 "cp attention output (allgather, this rank's positions)");
    }
    return out;
  }
  return cp_causal_attention(qkv, heads, parse_cp_algo(algo_), cp_, attn_p, gen);
}

// GPT::embed at this rank's global positions (vocab-parallel under tp).
Tensor CpGPT::embed(const Tensor& idx_local, int64_t T) {
  std::vector<int32_t> pos32;
  for (int64_t p : positions(T)) pos32.push_back(static_cast<int32_t>(p));
  Tensor pos = from_vector(pos32, {static_cast<int64_t>(pos32.size())});
  Tensor tok = tp_ ? vocab_parallel_embedding(gpt_->wte->weight, idx_local, tp_->tp())
                   : gpt_->wte->forward(idx_local);
  Tensor x = add(tok, gpt_->wpe->forward(pos));  // (B, T/C, C)
  // The residual stream holds this rank's positions: sharded(1) over cp.
  place_over(x, MeshAxis::CP, cp_, Placement::sharded(1, x.dim()),
             "residual stream (embedding output, this rank's positions)");
  Dropout& d = *gpt_->drop;
  return d.training() ? drop(x, d.p(), d.generator()) : x;
}

std::shared_ptr<GPT> CpGPT::copy_serial() const {
  NoGradGuard no_grad;
  auto serial = std::make_shared<GPT>(gpt_->config(), 0);
  for (const auto& [name, p] : gpt_->named_parameters()) {
    Tensor dst = serial->parameter(name);
    copy_(dst, p);
  }
  return serial;
}

Tensor CpGPT::loss(const Tensor& idx, const Tensor& targets) {
  MS_CHECK(idx.dim() == 2 && idx.dtype() == DType::I32,
           "CpGPT.forward: tokens must be i32 (B, T), got ", shape_str(idx.shape()), " ",
           dtype_name(idx.dtype()));
  const int64_t T = idx.shape()[1];
  MS_CHECK(T <= gpt_->config().block_size, "CpGPT.forward: sequence length ", T,
           " exceeds the model's block_size ", gpt_->config().block_size);
  T_ = T;
  Tensor x = embed(keep_positions(idx, T), T);
  for (const auto& block : gpt_->blocks()) x = block->forward(x);  // maybe checkpointed / ZeRO-3
  Tensor y = keep_positions(targets, T);                           // (B, T/C)
  return tp_ ? tp_->head_loss(x, y) : gpt_->head_loss(x, y);
}

}  // namespace ms
