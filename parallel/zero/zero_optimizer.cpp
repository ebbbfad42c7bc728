#include "parallel/zero/zero_optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "parallel/comm/overflow.h"
#include "parallel/dp/data_parallel.h"
#include "parallel/tp/sequence_parallel.h"
#include "parallel/zero/stage1.h"
#include "parallel/zero/stage2.h"
#include "parallel/zero/stage3.h"
#include "optim/grad_check.h"
#include "optim/kernels.h"
#include "tensor/factory.h"

namespace ms {

namespace {

// Stage 0 is DataParallel (../dp/data_parallel.h) behind the stage interface.
class DdpStage : public ZeroStage {
 public:
  DdpStage(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes, DType grad_dtype)
      : ddp_(std::move(params), std::move(dp), bucket_bytes, grad_dtype), grad_dtype_(grad_dtype) {}
  std::vector<Tensor> trainable() override { return ddp_.params(); }
  void set_gradient_sync(bool sync) override { ddp_.set_gradient_sync(sync); }
  void set_axis(MeshAxis axis) override { ddp_.set_axis(axis); }
  void reduce_gradients() override {
    ddp_.finish_gradient_sync();
    note_memory();
  }
  bool sharded_gradients() const override { return false; }  // every rank has the whole average
  void after_step() override { ddp_.zero_grad(); }
  void count_memory(MemoryCounter& c) const override {
    for (const Tensor& p : ddp_.params()) c.add(MemoryCounter::Params, p);
    for (const Tensor& b : ddp_.grad_buffers()) c.add(MemoryCounter::Grads, b);
    for (const Tensor& p : ddp_.params()) c.add(MemoryCounter::Grads, p.grad());
  }
  size_t layout_bytes(size_t K) const override {
    size_t n = 0, P = 4;
    for (const Tensor& p : ddp_.params()) n += static_cast<size_t>(p.numel());
    if (!ddp_.params().empty()) P = dtype_size(ddp_.params()[0].dtype());
    return (P + dtype_size(grad_dtype_) + K) * n;
  }

 private:
  DataParallel ddp_;
  DType grad_dtype_;
};

// K for the formula: AdamW keeps m and v (8 bytes per parameter); SGD keeps a
// momentum buffer once it has stepped (4) or nothing (0).
size_t optimizer_bytes_per_param(const Optimizer& opt) {
  if (opt.name() == "adamw") return 8;
  int64_t n = 0;
  for (const Tensor& p : opt.params()) n += p.numel();
  return n > 0 ? opt.state_bytes() / static_cast<size_t>(n) : 0;
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(GPT& model, Communicator dp, ZeroOptions opts,
                             OptimizerFactory make_optimizer)
    : model_(model), dp_(std::move(dp)), opts_(opts), num_params_(checked_num_params(model)) {
  MS_CHECK(opts_.stage >= 0 && opts_.stage <= 3, "zero: stage ", opts_.stage,
           " does not exist (valid: 0 = plain data parallelism, 1, 2, 3)");
  MS_CHECK(opts_.bucket_bytes > 0, "zero: bucket_bytes must be positive");
  MS_CHECK(make_optimizer != nullptr, "zero: make_optimizer is empty");
  opts_.precision.validate();
  // Dropout is allowed at every stage: stage 3 frees a block's gathered
  // parameters after its forward and re-gathers them for its backward, so
  // the forward's activations and dropout masks are the ones backward uses,
  // as in DDP (stage3.h; no block is recomputed).
  // Mixed precision: the model is held in 16-bit from here on (rank 0's values
  // are broadcast by the stage, already rounded), and the gradients the stage
  // accumulates and reduces have the communication dtype.
  const MixedPrecision& mp = opts_.precision;
  if (mp.enabled()) model.cast_parameters(mp.dtype);
  const DType grad_dtype = mp.enabled() ? mp.grad_dtype() : DType::F32;
  // Named parameters, so a placement error names the gradient
  // ("h.0.mlp.c_fc.weight grad"); a label another part set is kept.
  for (const auto& [name, p] : model.named_parameters())
    if (p.impl()->placements.label.empty()) set_label(p, name);
  switch (opts_.stage) {
    case 0:
      stage_ = std::make_unique<DdpStage>(stage_params(model), dp_, opts_.bucket_bytes, grad_dtype);
      break;
    case 1:
      stage_ = std::make_unique<ZeroStage1>(stage_params(model), dp_, grad_dtype);
      break;
    case 2:
      stage_ = std::make_unique<ZeroStage2>(stage_params(model), dp_, opts_.bucket_bytes, grad_dtype);
      break;
    case 3:
      stage_ = std::make_unique<ZeroStage3>(model, dp_, grad_dtype);
      break;
  }
  stage_->set_axis(opts_.axis);
  if (mp.enabled() || opts_.offload_optimizer) {
    // The optimizer sees only the fp32 masters of what this rank trains; under
    // ZeRO-Offload they are on the CPU (also for an fp32 model: DeepSpeed's
    // single_partition_of_fp32_groups then live in host memory).
    const std::vector<Tensor> trained = stage_->trainable();
    const Device master_device = opts_.offload_optimizer || trained.empty()
                                     ? Device::CPU
                                     : trained[0].device();
    masters_ = std::make_unique<MasterWeights>(trained, master_device);
    optimizer_ = make_optimizer(masters_->masters());
    if (mp.dtype == DType::F16) scaler_ = make_loss_scaler(mp.fp16);
  } else {
    optimizer_ = make_optimizer(stage_->trainable());
  }
  MS_CHECK(optimizer_ != nullptr, "zero: make_optimizer returned null");
  lay_out_norm(model);  // replicated_ranges_ (tp) and norm_skip_ (tp, pp)
}

ZeroOptimizer::~ZeroOptimizer() = default;

void ZeroOptimizer::set_gradient_sync(bool sync) {
  stage_->set_gradient_sync(sync);
}

Tensor ZeroOptimizer::scale_loss(const Tensor& loss) const {
  const double s = loss_scale();
  return s == 1.0 ? loss : mul(loss, s);
}

// Every rank's verdict on its own gradients, MAX-reduced over dp, then tp,
// then pp (parallel/comm/overflow.h): one rank's inf skips the step everywhere.
bool ZeroOptimizer::agreed_overflow() {
  std::vector<Tensor> grads;
  for (const Tensor& m : optimizer_->params()) grads.push_back(m.grad());
  return agree_on_overflow(has_overflow(grads), {&dp_, opts_.tp ? &opts_.tp->tp : nullptr,
                                                 opts_.pp ? &opts_.pp->pp : nullptr});
}

std::string ZeroOptimizer::skip_message() const {
  if (!skipped_) return "";
  return scaler_ ? scaler_->last_event()
                 : "OVERFLOW! Skipping step (bf16: inf/NaN in the gradients, no loss scale)";
}

void ZeroOptimizer::refresh_model_from_optimizer() {
  if (!masters_) return;
  masters_->store_params();
  stage_->after_step();  // zeroes the gradients, all-gathers the (16-bit) slices
}

double ZeroOptimizer::step(double lr, double max_norm) {
  MS_CHECK(max_norm >= 0, "zero: max_norm ", max_norm, " must be >= 0 (0 turns clipping off)");
  if (!std::exchange(reduced_, false)) stage_->reduce_gradients();
  const std::vector<Tensor>& mine = optimizer_->params();
  double scale = 1.0;
  skipped_ = false;
  if (masters_) {
    masters_->load_grads();  // the reduced 16-bit (or f32) gradients, as f32
    scale = loss_scale();    // the scale this step's backward used, before update()
    // The inf/NaN skip is mixed precision's (fp32 offload steps as fp32 does).
    const bool overflow = opts_.precision.enabled() && agreed_overflow();
    skipped_ = scaler_ ? scaler_->update(overflow) : overflow;
    if (skipped_) {
      ++skipped_steps_;
      peak_ = std::max(peak_, stage_->peak_bytes() + optimizer_->state_bytes() +
                                  masters_->master_bytes() + masters_->grad_bytes());
      masters_->drop_grads();
      stage_->after_step();  // zero the gradients; the parameters are unchanged
      return std::numeric_limits<double>::quiet_NaN();
    }
  }
  if (opts_.tp && opts_.tp->sum_replicated_grads) sum_replicated_grads();
  // Global gradient norm. With sharded gradients each rank has the sum of squares of its
  // slice only (padding adds nothing): all-reduce the sums, then take the root, so every
  // rank gets the same norm and clip factor one process would compute. tp, pp: see below.
  double sq = model_parallel_sq_norm();
  if (stage_->sharded_gradients()) {
    Tensor t = from_vector(std::vector<double>{sq}, {1}, DType::F64);
    dp_.all_reduce(t, ReduceOp::Sum);
    sq = t.item();
  }
  double norm = std::sqrt(sq);
  if (scaler_) {
    // DeepSpeed's unscale_and_clip_grads: one pass, from the scaled norm.
    std::vector<Tensor> grads;
    for (const Tensor& m : mine) grads.push_back(m.grad());
    unscale_and_clip(grads, scale, max_norm, norm);
    norm /= scale;
  } else {
    const double factor = clip_factor(norm, max_norm);
    if (factor != 1.0) scale_grads(mine, factor);
  }
  optimizer_->set_lr(lr);
  optimizer_->step();
  size_t opt_bytes = optimizer_->state_bytes();
  if (masters_) {
    opt_bytes += masters_->master_bytes();
    peak_ = std::max(peak_, stage_->peak_bytes() + opt_bytes + masters_->grad_bytes());
    masters_->drop_grads();
    masters_->store_params();  // masters rounded into the 16-bit parameters (my slices)
  }
  peak_ = std::max(peak_, stage_->peak_bytes() + opt_bytes);
  stage_->after_step();
  peak_ = std::max(peak_, stage_->peak_bytes() + opt_bytes);
  return norm;
}

double ZeroOptimizer::reduce_and_sq_norm(double grad_scale) {
  MS_CHECK(!masters_ && !opts_.tp && !opts_.pp,
           "zero: the shared-norm step runs in fp32 without tp or pp");
  if (!std::exchange(reduced_, false)) stage_->reduce_gradients();
  skipped_ = false;
  if (grad_scale != 1.0) scale_grads(optimizer_->params(), grad_scale);
  double sq = local_sq_norm();
  if (stage_->sharded_gradients()) {
    Tensor t = from_vector(std::vector<double>{sq}, {1}, DType::F64);
    dp_.all_reduce(t, ReduceOp::Sum);
    sq = t.item();
  }
  return sq;
}

void ZeroOptimizer::finish_step(double lr, double max_norm, double norm) {
  MS_CHECK(max_norm >= 0, "zero: max_norm ", max_norm, " must be >= 0 (0 turns clipping off)");
  const double factor = clip_factor(norm, max_norm);
  if (factor != 1.0) scale_grads(optimizer_->params(), factor);
  optimizer_->set_lr(lr);
  optimizer_->step();
  const size_t opt_bytes = optimizer_->state_bytes();
  peak_ = std::max(peak_, stage_->peak_bytes() + opt_bytes);
  stage_->after_step();
  peak_ = std::max(peak_, stage_->peak_bytes() + opt_bytes);
}

std::vector<ZeroOptimizer::Fragment> ZeroOptimizer::fragments() const {
  // The stages index the parameters they were given: the owned ones under a
  // pipeline (stages 0 and 1 only) or an expert-parallel subset, all of them
  // otherwise.
  std::vector<int> model_index;
  const int n = static_cast<int>(model_.parameters().size());
  for (int i = 0; i < n; ++i)
    if (trains(i)) model_index.push_back(i);
  std::vector<Fragment> out;
  const auto* sharded = dynamic_cast<const ZeroShardedStage*>(stage_.get());
  if (!sharded) {
    const std::vector<Tensor>& ps = optimizer_->params();
    for (size_t j = 0; j < ps.size(); ++j)
      out.push_back({static_cast<int>(j), model_index[j], 0, 0, ps[j].numel(), ps[j].shape()});
    return out;
  }
  const FlatParams& layout = sharded->layout();
  const int64_t r = dp_.rank();
  for (int g = 0; g < layout.num_groups(); ++g) {
    const FlatGroup& group = layout.group(g);
    const int64_t lo = r * group.slice_numel, hi = lo + group.slice_numel;
    for (size_t k = 0; k < group.params.size(); ++k) {
      const int j = group.params[k];
      const int64_t begin = group.offsets[k], end = begin + shape_numel(layout.shape_of(j));
      const int64_t a = std::max(begin, lo), b = std::min(end, hi);
      if (a < b) out.push_back({g, model_index[j], a - begin, a - lo, b - a, layout.shape_of(j)});
    }
  }
  return out;
}

void ZeroOptimizer::reduce_gradients() {
  MS_CHECK(!reduced_, "zero: reduce_gradients called twice before step()");
  stage_->reduce_gradients();
  reduced_ = true;
}

// Ψ of what this rank trains, after the pipeline's checks (before any stage
// is built, so a refused configuration costs nothing).
int64_t ZeroOptimizer::checked_num_params(const GPT& model) const {
  if (!opts_.subset.empty()) {
    MS_CHECK(opts_.subset.size() == model.parameters().size(), "zero: the subset mask has ",
             opts_.subset.size(), " entries for ", model.parameters().size(), " parameters");
    MS_CHECK(opts_.stage <= 2 && !opts_.pp && !opts_.tp && !opts_.precision.enabled(),
             "zero: a parameter subset (expert parallelism) runs at stages 0-2 in fp32 without "
             "tp or pp, got stage ", opts_.stage);
    int64_t n = 0;
    const std::vector<Tensor> all = model.parameters();
    for (size_t i = 0; i < all.size(); ++i)
      if (opts_.subset[i]) n += all[i].numel();
    return n;
  }
  if (!opts_.pp) return model.num_parameters();
  MS_CHECK(opts_.stage < 2, "--zero-stage ", opts_.stage,
           " with --pp > 1: ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism "
           "(DeepSpeed's PipelineEngine): they reduce-scatter gradients on every micro-batch, "
           "m times per step; use --zero-stage 0 or 1");
  const std::vector<Tensor> all = model.parameters();
  MS_CHECK(opts_.pp->owned.size() == all.size() && opts_.pp->tied_copy.size() == all.size(),
           "zero: the pipeline masks have ", opts_.pp->owned.size(), " and ",
           opts_.pp->tied_copy.size(), " entries for ", all.size(), " parameters");
  int64_t n = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (opts_.pp->owned[i]) n += all[i].numel();
  return n;
}

// A pipeline stage trains its own parameters only (ZeroPipeline).
std::vector<Tensor> ZeroOptimizer::stage_params(const GPT& model) const {
  return owned(model.parameters());
}

bool ZeroOptimizer::trains(size_t i) const {
  return (!opts_.pp || opts_.pp->owned[i]) && (opts_.subset.empty() || opts_.subset[i]);
}

template <typename T>
std::vector<T> ZeroOptimizer::owned(const std::vector<T>& per_param) const {
  if (!opts_.pp && opts_.subset.empty()) return per_param;
  std::vector<T> out;
  for (size_t i = 0; i < per_param.size(); ++i)
    if (trains(i)) out.push_back(per_param[i]);
  return out;
}

// Which element ranges of the tensors this rank trains each rule concerns:
// tp's replicated parameters (summed under SP; in the norm on tp rank 0
// only) and a pipeline's tied copy (not in the norm).
void ZeroOptimizer::lay_out_norm(const GPT& model) {
  std::vector<bool> skip(stage_params(model).size(), false);
  bool any_skip = false;
  if (opts_.tp) {
    const std::vector<bool> replicated = owned(checked_mask(*opts_.tp, model));
    replicated_ranges_ = stage_->ranges_of(replicated);
    if (opts_.tp->tp.rank() != 0) skip = replicated, any_skip = true;
  }
  if (opts_.pp) {
    const std::vector<bool> tied = owned(opts_.pp->tied_copy);
    for (size_t i = 0; i < tied.size(); ++i)
      if (tied[i]) skip[i] = true, any_skip = true;
  }
  if (any_skip) norm_skip_ = stage_->ranges_of(skip);
}

// This rank's Σ g² summed over the model-parallel ranks, every parameter
// counted once: sharded ones summed over tp, replicated ones on tp rank 0
// only (parallel/tp/grad_norm.h's rule); each pipeline stage's own, summed
// over pp, the last stage's tied wte left out (Megatron's get_grad_norm_fp32
// reduces over the model-parallel group; step() adds the dp sum).
double ZeroOptimizer::model_parallel_sq_norm() {
  double sq = local_sq_norm();
  for (Communicator* c : {opts_.tp ? &opts_.tp->tp : nullptr, opts_.pp ? &opts_.pp->pp : nullptr}) {
    if (c == nullptr || c->size() == 1) continue;
    Tensor t = from_vector(std::vector<double>{sq}, {1}, DType::F64);
    c->all_reduce(t, ReduceOp::Sum);
    sq = t.item();
  }
  return sq;
}

int64_t ZeroOptimizer::replicated_grad_numel() const {
  int64_t n = 0;
  if (opts_.tp && opts_.tp->sum_replicated_grads)
    for (const auto& ranges : replicated_ranges_)
      for (const auto& [b, e] : ranges) n += e - b;
  return n;
}

// Sequence parallelism's tp sum of the replicated gradients, on what this
// rank holds after the dp reduction (Megatron: finalize_model_grads →
// _allreduce_non_tensor_model_parallel_grads, coalesced into one message).
void ZeroOptimizer::sum_replicated_grads() {
  const std::vector<Tensor>& mine = optimizer_->params();
  std::vector<Tensor> parts;  // views of the gradients
  std::vector<Tensor> whole;  // gradients of whole replicated parameters (stage 0): placed over tp
  for (size_t i = 0; i < mine.size(); ++i) {
    if (!mine[i].grad().defined()) continue;
    Tensor flat = reshape(detach(mine[i].grad()), {-1});
    const auto& ranges = replicated_ranges_[i];
    if (ranges.size() == 1 && ranges[0] == std::pair<int64_t, int64_t>{0, flat.numel()})
      whole.push_back(mine[i].grad());
    for (const auto& [b, e] : ranges) parts.push_back(narrow(flat, 0, b, e - b));
  }
  if (parts.empty()) return;  // the same on every tp rank: identical layouts
  for (const Tensor& g : whole)
    refuse_summed_sequence_parallel_grad(g, opts_.tp->tp, "zero: the sequence-parallel tp sum");
  Tensor buf = contiguous(cat(parts, 0));  // (Σ elements)
  opts_.tp->tp.all_reduce(buf, ReduceOp::Sum);
  int64_t off = 0;
  for (Tensor& part : parts) {
    copy_(part, narrow(buf, 0, off, part.numel()));
    off += part.numel();
  }
  for (const Tensor& g : whole) place_summed_sequence_parallel_grad(g, opts_.tp->tp);
}

// This rank's own Σ g², leaving out the ranges in norm_skip_ (sorted and
// disjoint, as ranges_of lays them out): the kept stretches go through the
// same kernel as grad_sq_norm, with no per-step copy or mask.
double ZeroOptimizer::local_sq_norm() {
  const std::vector<Tensor>& mine = optimizer_->params();
  if (norm_skip_.empty()) return grad_sq_norm(mine);
  double sq = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    if (!mine[i].grad().defined()) continue;
    refuse_unreduced_grad(mine[i].grad(), "gradient norm");  // skipped ranges included
    const Tensor g = optim_kernels::contiguous_or_self(mine[i].grad());
    // A stretch [lo, hi) of the flat gradient, as a view: the kernel runs on
    // the gradient's device (optim/kernels.h).
    auto stretch = [&](int64_t lo, int64_t hi) {
      return optim_kernels::sum_squares(Tensor::make_view(g, {hi - lo}, {1}, g.offset() + lo));
    };
    int64_t from = 0;
    for (const auto& [b, e] : norm_skip_[i]) {
      sq += stretch(from, b);
      from = e;
    }
    sq += stretch(from, g.numel());
  }
  return sq;
}

const std::vector<bool>& ZeroOptimizer::checked_mask(const ZeroTensorParallel& tp,
                                                     const GPT& model) {
  MS_CHECK(tp.replicated.size() == model.parameters().size(), "zero: the tp replicated mask has ",
           tp.replicated.size(), " entries for ", model.parameters().size(), " parameters");
  return tp.replicated;
}

MemoryReport ZeroOptimizer::memory() const {
  MemoryCounter c;
  stage_->count_memory(c);
  MemoryReport r;
  r.rank = dp_.rank();
  r.params = c.bytes(MemoryCounter::Params);
  r.grads = c.bytes(MemoryCounter::Grads);
  r.buffers = c.bytes(MemoryCounter::Buffers);
  // Mixed precision: the fp32 masters are optimizer state (the paper's K = 12
  // for Adam: 4 master + 4 momentum + 4 variance).
  r.optimizer = optimizer_->state_bytes() + (masters_ ? masters_->master_bytes() : 0);
  r.peak = std::max({peak_, stage_->peak_bytes() + r.optimizer, r.total()});
  const size_t K = optimizer_bytes_per_param(*optimizer_) + (masters_ ? 4 : 0);
  r.layout = stage_->layout_bytes(K);
  r.released_alive = stage_->released_alive();
  const MixedPrecision& mp = opts_.precision;
  r.predicted = mp.enabled() ? estimate_memory(num_params_, dp_.size(), opts_.stage, K,
                                               dtype_size(mp.dtype), dtype_size(mp.grad_dtype()))
                             : estimate_memory(num_params_, dp_.size(), opts_.stage, K);
  return r;
}

void ZeroOptimizer::gather_full_parameters() {
  stage_->gather_full_parameters();
}

StepFormula ZeroOptimizer::traffic_formula(int64_t micro_steps) {
  int64_t padded = num_params_, resident = 0;
  if (auto* s = dynamic_cast<ZeroShardedStage*>(stage_.get())) {
    const FlatParams& f = s->layout();
    padded = 0;
    for (int g = 0; g < f.num_groups(); ++g) {
      padded += f.group(g).padded;
      if (opts_.stage == 3 && !f.is_released(f.group(g).params[0])) resident += f.group(g).padded;
    }
  }
  const MixedPrecision& mp = opts_.precision;
  return zero_step_formula(opts_.stage, dp_.size(), micro_steps, num_params_, padded, resident,
                           static_cast<int64_t>(dtype_size(mp.dtype)), mp.enabled());
}

}  // namespace ms
