#include "parallel/zero/stage3.h"

#include <algorithm>
#include <functional>
#include <map>
#include <utility>

#include "autograd/node.h"
#include "autograd/ops.h"

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
  rest_group_ = layout_.num_groups() - 1;
  gathering_.resize(layout_.num_groups());
  last_released_.resize(layout_.num_groups());
  backward_buffer_.resize(layout_.num_groups());
  grads_arrived_.assign(layout_.num_groups(), 0);
  // Move my slices out of the full buffers into a buffer of their own, then
  // drop the blocks' full buffers: from now on a rank holds 1/D of them.
  param_slices_flat_ =
      Tensor::empty({layout_.slices_numel()}, layout_.dtype(), layout_.device());
  for (int g = 0; g < layout_.num_groups(); ++g) {
    const FlatGroup& grp = layout_.group(g);
    Tensor mine = narrow(param_slices_flat_, 0, grp.slice_offset, grp.slice_numel);
    copy_(mine, param_slices_[g]);
    mine.set_grad(param_slices_[g].grad());  // the same gradient slice stage 2 set up
    param_slices_[g] = mine;
  }
  for (int g = 0; g < rest_group_; ++g) release(g);
  blocks_ = model_.blocks();
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

void ZeroStage3::prefetch(int g, const Tensor& buffer) {
  if (full_params_[g].defined()) {
    if (!buffer.defined() || full_params_[g].storage() == buffer.storage()) return;
    release(g);  // gathered into another buffer (a second forward before this backward)
  }
  if (buffer.defined()) {
    buffer.storage()->restore_data();  // the same Storage the graph's saved views point at
    full_params_[g] = buffer;
  } else {
    // In the parameters' dtype: under mixed precision the gather moves 16-bit.
    full_params_[g] =
        Tensor::empty({layout_.group(g).padded}, layout_.dtype(), layout_.device());
  }
  gathering_[g] = dp_.iall_gather(param_slices_[g], full_params_[g]);
}

void ZeroStage3::gather(int g, const Tensor& buffer) {
  prefetch(g, buffer);
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
  // The bytes go back to the allocator now, even while a graph still holds
  // views of this Storage (they are refilled before they are read again).
  full_params_[g].storage()->release_data();
  last_released_[g] = full_params_[g].storage();
  full_params_[g] = Tensor();
}

namespace {

// Identity in forward; in backward, runs `before_backward` and passes the
// gradient on. Placed at a block's output, it runs before every node of the
// block (each of them only gets gradient through it): DeepSpeed's and FSDP's
// pre-backward hook.
Tensor pre_backward_hook(const Tensor& y, std::function<void()> before_backward) {
  Tensor out = detach(y);  // same storage, a TensorImpl of our own for the node
  record(out, "zero3_pre_backward", {y},
         [before_backward = std::move(before_backward)](const Tensor& grad) {
           before_backward();
           return std::vector<Tensor>{grad};
         });
  return out;
}

}  // namespace

Tensor ZeroStage3::run_block(int b, const Tensor& x) {
  const int L = static_cast<int>(blocks_.size());
  const int g = group_of_block(b, L);
  gather(g);
  if (b + 1 < L) prefetch(group_of_block(b + 1, L));  // overlaps with this block's compute
  Tensor y = blocks_[b]->forward(x);  // a CheckpointedBlock checkpoints itself here
  if (y.requires_grad()) {
    // The graph just built saved views of full_params_[g]; backward refills
    // that buffer (released below) before the block's backward reads it, and
    // starts block b-1's gather into the buffer ITS graph saved.
    Tensor buffer = full_params_[g];
    backward_buffer_[g] = buffer;
    y = pre_backward_hook(y, [this, b, g, L, buffer] {
      gather(g, buffer);
      if (b > 0) {
        const int prev = group_of_block(b - 1, L);
        if (backward_buffer_[prev].defined()) prefetch(prev, backward_buffer_[prev]);
      }
    });
  }
  release(g);
  return y;
}

// Once a block's last parameter gradient is final, its backward has read the
// gathered parameters for the last time: stage 2 has launched (or queued) the
// block's reduce-scatter, and the parameters go.
void ZeroStage3::on_grad_ready(int param) {
  ZeroStage2::on_grad_ready(param);
  const int g = layout_.group_of(param);
  if (g == rest_group_) return;
  if (++grads_arrived_[g] < static_cast<int>(layout_.group(g).params.size())) return;
  grads_arrived_[g] = 0;
  release(g);
}

void ZeroStage3::set_gradient_sync(bool sync) {
  ZeroStage2::set_gradient_sync(sync);
  std::fill(grads_arrived_.begin(), grads_arrived_.end(), 0);  // a new backward starts
}

void ZeroStage3::reduce_gradients() {
  ZeroStage2::reduce_gradients();
  std::fill(grads_arrived_.begin(), grads_arrived_.end(), 0);
  // A prefetch nobody consumed must not read our slice while the optimizer
  // writes it; a block whose backward left a parameter without gradient is
  // still gathered.
  for (int g = 0; g < rest_group_; ++g) release(g);
  for (Tensor& t : backward_buffer_) t = Tensor();
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
    // A graph may still hold the Storage object; its bytes must be gone.
    std::shared_ptr<Storage> s = last_released_[g].lock();
    if (s && !full_params_[g].defined()) bytes += s->nbytes();
  }
  return bytes;
}

}  // namespace ms
