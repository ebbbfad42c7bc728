#include "parallel/zero/stage3.h"

#include <map>
#include <utility>

#include "autograd/checkpoint.h"
#include "autograd/ops.h"
#include "nn/checkpointed_block.h"

namespace ms {

namespace {

// Groups, in the order backward finishes them: block L-1, ..., block 0, then
// everything outside the blocks (its last gradient, wte's, comes at the very end).
std::vector<std::vector<int>> block_groups(const GPT& model) {
  std::map<const TensorImpl*, int> index;
  std::vector<Tensor> params = model.parameters();
  for (size_t i = 0; i < params.size(); ++i) index[params[i].impl()] = static_cast<int>(i);
  std::vector<std::vector<int>> groups;
  std::vector<bool> in_block(params.size(), false);
  for (size_t b = model.blocks().size(); b-- > 0;) {
    groups.emplace_back();
    for (const Tensor& p : model.blocks()[b]->parameters()) {
      int i = index.at(p.impl());
      groups.back().push_back(i);
      in_block[i] = true;
    }
  }
  groups.emplace_back();
  for (size_t i = params.size(); i-- > 0;)
    if (!in_block[i]) groups.back().push_back(static_cast<int>(i));
  return groups;
}

}  // namespace

// Block b as ZeRO-3 runs it. It holds the block as an unnamed child, so the
// model's parameter names and order do not change.
class ZeroStage3::GatheredBlock : public Layer {
 public:
  GatheredBlock(ZeroStage3& stage, int b, std::shared_ptr<Layer> block) : stage_(stage), b_(b) {
    register_module("", std::move(block));
  }
  Tensor forward(const Tensor& x) override { return stage_.run_block(b_, x); }

 private:
  ZeroStage3& stage_;
  int b_;
};

ZeroStage3::ZeroStage3(GPT& model, Communicator dp, std::optional<DType> grad_dtype)
    : ZeroStage2(model.parameters(), std::move(dp), block_groups(model), grad_dtype),
      model_(model) {
  MS_CHECK(model.config().dropout == 0,
           "ZeRO stage 3 recomputes each block in backward, and a "
           "recomputed dropout would draw a different mask: set dropout to 0 (got ",
           model.config().dropout, ")");
  rest_group_ = layout_.num_groups() - 1;
  gathering_.resize(layout_.num_groups());
  last_released_.resize(layout_.num_groups());
  // Move my slices out of the full buffers into a buffer of their own, then
  // drop the blocks' full buffers: from now on a rank holds 1/D of them.
  param_slices_flat_ = Tensor::empty({layout_.slices_numel()}, layout_.dtype());
  for (int g = 0; g < layout_.num_groups(); ++g) {
    const FlatGroup& grp = layout_.group(g);
    Tensor mine = narrow(param_slices_flat_, 0, grp.slice_offset, grp.slice_numel);
    copy_(mine, param_slices_[g]);
    mine.set_grad(param_slices_[g].grad());  // the same gradient slice stage 2 set up
    param_slices_[g] = mine;
  }
  for (int g = 0; g < rest_group_; ++g) release(g);
  blocks_ = model_.blocks();
  for (const auto& block : blocks_) {
    auto ckpt = std::dynamic_pointer_cast<CheckpointedBlock>(block);
    run_.push_back(ckpt ? ckpt->inner() : block);
  }
  for (size_t b = 0; b < blocks_.size(); ++b)
    model_.replace_block(b,
                         std::make_shared<GatheredBlock>(*this, static_cast<int>(b), blocks_[b]));
  note_memory();
}

ZeroStage3::~ZeroStage3() {
  for (size_t b = 0; b < blocks_.size(); ++b) model_.replace_block(b, blocks_[b]);
  for (Work& w : gathering_) w.wait();
}

// Group of block b (groups run backwards: block L-1 is group 0).
static int group_of_block(int b, int num_blocks) {
  return num_blocks - 1 - b;
}

void ZeroStage3::prefetch(int g) {
  if (full_params_[g].defined()) return;  // gathered or on its way
  // In the parameters' dtype: under mixed precision the gather moves 16-bit.
  full_params_[g] = Tensor::empty({layout_.group(g).padded}, layout_.dtype());
  gathering_[g] = dp_.iall_gather(param_slices_[g], full_params_[g]);
}

void ZeroStage3::gather(int g) {
  prefetch(g);
  gathering_[g].wait();
  gathering_[g] = Work();
  layout_.bind(g, full_params_[g]);
  note_memory();
}

void ZeroStage3::release(int g) {
  if (pinned_ || !full_params_[g].defined()) return;
  gathering_[g].wait();
  gathering_[g] = Work();
  layout_.release(g);
  last_released_[g] = full_params_[g].storage();
  full_params_[g] = Tensor();  // the last reference: the memory goes back to the allocator
}

Tensor ZeroStage3::run_block(int b, const Tensor& x) {
  const int L = static_cast<int>(blocks_.size());
  const int g = group_of_block(b, L);
  gather(g);
  if (b + 1 < L) prefetch(group_of_block(b + 1, L));  // overlaps with this block's compute
  // Activation checkpointing (autograd/checkpoint.h): the forward runs under
  // NoGradGuard, so no graph keeps the gathered parameters alive, and one node
  // saves only the block's input. In backward the block's parameters are
  // gathered again (prefetching block b-1's), the block is recomputed and
  // backpropagated — its gradient hooks fire, and once the block's last one
  // has, stage 2's code reduce-scatters the block — and released.
  CheckpointHooks hooks{[this, b, g, L] {
                          gather(g);
                          if (b > 0) prefetch(group_of_block(b - 1, L));
                        },
                        [this, g] { release(g); }};
  Tensor y = checkpoint([this, b](const Tensor& in) { return run_[b]->forward(in); }, x,
                        dropout_generators(*run_[b]), std::move(hooks), "zero3_block");
  release(g);
  return y;
}

void ZeroStage3::reduce_gradients() {
  ZeroStage2::reduce_gradients();
  // A prefetch nobody consumed must not read our slice while the optimizer writes it.
  for (int g = 0; g < rest_group_; ++g) release(g);
}

void ZeroStage3::after_step() {
  pinned_ = false;
  for (int g = 0; g < rest_group_; ++g) release(g);
  ZeroStage2::after_step();  // refreshes what is still gathered: the rest group
}

void ZeroStage3::gather_full_parameters() {
  for (int g = 0; g < rest_group_; ++g) gather(g);
  pinned_ = true;
}

// My slices (parameters, gradients, optimizer state) plus the rest group,
// which stays gathered.
size_t ZeroStage3::layout_bytes(size_t K) const {
  const size_t mine = static_cast<size_t>(layout_.slices_numel());
  const size_t P = dtype_size(layout_.dtype()), G = dtype_size(grad_dtype_);
  return P * mine + P * static_cast<size_t>(layout_.group(rest_group_).padded) + (G + K) * mine;
}

size_t ZeroStage3::released_alive() const {
  size_t bytes = 0;
  for (int g = 0; g < rest_group_; ++g) {
    std::shared_ptr<Storage> s = last_released_[g].lock();
    if (s && !full_params_[g].defined()) bytes += s->nbytes();
  }
  return bytes;
}

}  // namespace ms
