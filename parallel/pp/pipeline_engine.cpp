#include "parallel/pp/pipeline_engine.h"

#include <chrono>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/placement.h"
#include "tensor/storage.h"

namespace ms::pp {

LayerRange stage_layers(int64_t n_layer, int stages, int s) {
  MS_CHECK(stages >= 1 && s >= 0 && s < stages, "stage_layers: stage ", s, " of ", stages);
  MS_CHECK(n_layer >= stages, "--n-layer ", n_layer, " is fewer than the ", stages,
           " pipeline stages (--pp × --virtual-stages): every stage needs at least one block");
  const int64_t base = n_layer / stages, extra = n_layer % stages;
  const int64_t begin = s * base + std::min<int64_t>(s, extra);
  return {begin, begin + base + (s < extra ? 1 : 0)};
}

StageParams stage_params(const std::vector<std::string>& names, int64_t n_layer, int p, int v,
                         int rank) {
  // Block i's rank: the virtual stage holding it, modulo p.
  std::vector<int> block_rank(n_layer);
  for (int s = 0; s < p * v; ++s) {
    const LayerRange r = stage_layers(n_layer, p * v, s);
    for (int64_t i = r.begin; i < r.end; ++i) block_rank[i] = s % p;
  }
  StageParams out;
  for (const std::string& n : names) {
    bool own = false, tied = false;
    if (n.rfind("wte.", 0) == 0) {
      own = rank == 0 || rank == p - 1;
      tied = p > 1 && rank == p - 1;
    } else if (n.rfind("wpe.", 0) == 0) {
      own = rank == 0;
    } else if (n.rfind("ln_f.", 0) == 0) {
      own = rank == p - 1;
    } else if (n.rfind("h.", 0) == 0) {
      const int64_t i = std::stoll(n.substr(2));
      MS_CHECK(i >= 0 && i < n_layer, "stage_params: parameter ", n, " outside the ", n_layer,
               " blocks");
      own = block_rank[i] == rank;
    } else {
      MS_CHECK(false, "stage_params: no pipeline stage for parameter ", n);
    }
    out.owned.push_back(own);
    out.tied_copy.push_back(tied);
  }
  return out;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

PipelineEngine::PipelineEngine(StageModel model, Communicator pp, Schedule schedule,
                               int64_t n_layer, std::vector<int64_t> activation, Tensor tied)
    : model_(std::move(model)),
      pp_(std::move(pp)),
      schedule_(std::move(schedule)),
      rank_(pp_.rank()),
      p_(pp_.size()),
      v_(schedule_.virtual_stages),
      m_(schedule_.micro_batches),
      n_layer_(n_layer),
      activation_(std::move(activation)),
      tied_(std::move(tied)) {
  MS_CHECK(schedule_.stages == p_, "pipeline: a schedule for ", schedule_.stages,
           " stages on a pp group of ", p_);
  MS_CHECK(v_ == 1 || p_ > 1, "pipeline: interleaving needs --pp of at least 2");
  stage_layers(n_layer_, p_ * v_, 0);  // fewer layers than stages: the error names both
  // The last stage's copy of wte starts as the first stage's (Megatron zeroes
  // it and all-reduces; a send is the same copy).
  if (p_ > 1 && tied_.defined()) {
    NoGradGuard no_grad;
    if (rank_ == 0) pp_.send(tied_, p_ - 1, 0);
    if (rank_ == p_ - 1) {
      Tensor w = Tensor::empty(tied_.shape(), DType::F32, device());
      pp_.recv(w, 0, 0);
      copy_(tied_, w);
    }
  }
}

// DeepSpeed's _INSTRUCTION_MAP: one handler per instruction class.
PipelineEngine::Handler PipelineEngine::handler(Op op) {
  switch (op) {
    case Op::kLoadMicroBatch:
      return &PipelineEngine::exec_load;
    case Op::kForwardPass:
      return &PipelineEngine::exec_forward;
    case Op::kBackwardPass:
      return &PipelineEngine::exec_backward;
    case Op::kSendActivation:
      return &PipelineEngine::exec_send_activation;
    case Op::kRecvActivation:
      return &PipelineEngine::exec_recv_activation;
    case Op::kSendGrad:
      return &PipelineEngine::exec_send_grad;
    case Op::kRecvGrad:
      return &PipelineEngine::exec_recv_grad;
    case Op::kReduceTiedGrads:
      return &PipelineEngine::exec_reduce_tied_grads;
    case Op::kReduceGrads:
      return &PipelineEngine::exec_reduce_grads;
    case Op::kOptimizerStep:
      return &PipelineEngine::exec_optimizer_step;
  }
  MS_CHECK(false, "pipeline: unknown instruction");
  return nullptr;
}

double PipelineEngine::train_step(const std::function<Batch(int)>& load, const StepHooks& hooks) {
  load_ = &load;
  hooks_ = &hooks;
  loss_sum_ = 0;
  in_flight_ = peak_ = 0;
  events_.clear();
  base_bytes_ = cpu_bytes_allocated();
  peak_bytes_ = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const Instr& in : schedule_.steps[rank_]) {
    const double start = seconds_since(t0);
    (this->*handler(in.op))(in);
    events_.push_back({in, start, seconds_since(t0)});
  }
  MS_ASSERT(inputs_.empty() && outputs_.empty() && grads_in_.empty() && grads_out_.empty(),
            "pipeline: the step left activations or gradients behind");
  batches_.clear();
  load_ = nullptr;
  hooks_ = nullptr;
  return rank_ == p_ - 1 ? loss_sum_ / m_ : 0.0;
}

double PipelineEngine::broadcast_loss(double loss) {
  Tensor t = full({1}, loss, DType::F64);
  if (p_ > 1) pp_.broadcast(t, p_ - 1);
  return t.item();
}

double PipelineEngine::forward_loss(const Batch& b) {
  NoGradGuard no_grad;
  double loss = 0;
  for (int chunk = 0; chunk < v_; ++chunk) {
    Tensor x;
    if (is_first_virtual(schedule_, rank_, chunk)) {
      x = model_.embed(b.x.to(device()));  // a loader's batch is on the host
    } else {
      x = Tensor::empty(activation_, DType::F32, device());
      pp_.recv(x, prev_virtual(p_, rank_, chunk).rank, Communicator::kMaxUserTag - 1);
    }
    const LayerRange layers = stage_layers(n_layer_, p_ * v_, chunk * p_ + rank_);
    for (int64_t l = layers.begin; l < layers.end; ++l) x = model_.block(l, x);
    if (is_last_virtual(schedule_, rank_, chunk))
      loss = model_.head_loss(x, b.y.to(device())).item();
    else
      pp_.send(contiguous(x), next_virtual(p_, rank_, chunk).rank, Communicator::kMaxUserTag - 1);
  }
  return broadcast_loss(loss);
}

// A message's tag says what it carries, so a mismatched pair fails loudly
// instead of computing on the wrong tensor (the schedule's order is what
// prevents deadlock; see comm_order.cpp).
int PipelineEngine::tag(const Instr& in, bool grad) const {
  return 1 + ((in.micro_batch * v_ + in.chunk) * 2 + (grad ? 1 : 0)) % Communicator::kMaxUserTag;
}

void PipelineEngine::exec_load(const Instr& in) {
  batches_[in.micro_batch] = (*load_)(in.micro_batch);
}

void PipelineEngine::exec_forward(const Instr& in) {
  const Key key{in.micro_batch, in.chunk};
  const int s = in.chunk * p_ + rank_;  // virtual stage
  Tensor x;
  if (is_first_virtual(schedule_, rank_, in.chunk)) {
    x = model_.embed(batches_.at(in.micro_batch).x);
  } else {
    auto it = inputs_.find(key);
    MS_ASSERT(it != inputs_.end(), "pipeline: forward of ", describe(in, v_), " before its input");
    x = it->second;
  }
  const LayerRange layers = stage_layers(n_layer_, p_ * v_, s);
  for (int64_t l = layers.begin; l < layers.end; ++l) x = model_.block(l, x);
  if (is_last_virtual(schedule_, rank_, in.chunk)) {
    Tensor loss = model_.head_loss(x, batches_.at(in.micro_batch).y);
    loss_sum_ += loss.item();
    // The one place the 1/m scaling happens (as the serial loop's mul).
    x = m_ > 1 ? mul(loss, 1.0 / static_cast<double>(m_)) : loss;
  }
  outputs_[key] = x;
  peak_ = std::max(peak_, ++in_flight_);
  const size_t now = cpu_bytes_allocated();
  if (now > base_bytes_) peak_bytes_ = std::max(peak_bytes_, now - base_bytes_);
}

void PipelineEngine::exec_backward(const Instr& in) {
  const Key key{in.micro_batch, in.chunk};
  auto out = outputs_.find(key);
  MS_ASSERT(out != outputs_.end(), "pipeline: backward of ", describe(in, v_),
            " before its forward");
  if (is_last_virtual(schedule_, rank_, in.chunk)) {
    out->second.backward();
  } else {
    auto g = grads_in_.find(key);
    MS_ASSERT(g != grads_in_.end(), "pipeline: backward of ", describe(in, v_),
              " before its gradient arrived");
    out->second.backward(g->second);
    grads_in_.erase(g);
  }
  outputs_.erase(out);  // frees the graph: the stashed activations go here
  --in_flight_;
  // Right after backward: the first and last stage each hold their own part
  // of the tied wte's gradient, which owes the sum over the two (the
  // embedding group; ReduceTiedGrads pays it). Marked after every backward,
  // so an accumulated gradient still owes it.
  if (holds_tied() && tied_.grad().defined()) {
    const Tensor g = tied_.grad();
    const std::string& name = tied_.impl()->placements.label;  // "wte.weight" (ZeroOptimizer)
    set_placement(g, MeshAxis::Embedding, Placement::partial(),
                  g.impl()->placements.label.empty() ? (name.empty() ? "wte" : name) + " grad"
                                                     : std::string());
  }
  if (!is_first_virtual(schedule_, rank_, in.chunk)) {
    auto x = inputs_.find(key);
    MS_ASSERT(x != inputs_.end(), "pipeline: no input kept for ", describe(in, v_));
    grads_out_[key] = x->second.grad();
    inputs_.erase(x);
  }
}

void PipelineEngine::exec_send_activation(const Instr& in) {
  const Key key{in.micro_batch, in.chunk};
  const Peer to = next_virtual(p_, rank_, in.chunk);
  pp_.send(contiguous(detach(outputs_.at(key))), to.rank,
           tag(Instr{in.op, in.micro_batch, to.chunk}, false));
}

void PipelineEngine::exec_recv_activation(const Instr& in) {
  const Peer from = prev_virtual(p_, rank_, in.chunk);
  Tensor x = Tensor::empty(activation_, DType::F32, device());
  pp_.recv(x, from.rank, tag(in, false));
  x.set_requires_grad(true);
  inputs_[{in.micro_batch, in.chunk}] = x;
}

void PipelineEngine::exec_send_grad(const Instr& in) {
  const Key key{in.micro_batch, in.chunk};
  auto g = grads_out_.find(key);
  MS_ASSERT(g != grads_out_.end(), "pipeline: SendGrad of ", describe(in, v_),
            " before its backward");
  const Peer to = prev_virtual(p_, rank_, in.chunk);
  pp_.send(contiguous(g->second), to.rank, tag(Instr{in.op, in.micro_batch, to.chunk}, true));
  grads_out_.erase(g);
}

void PipelineEngine::exec_recv_grad(const Instr& in) {
  const Peer from = next_virtual(p_, rank_, in.chunk);
  Tensor g = Tensor::empty(activation_, DType::F32, device());
  pp_.recv(g, from.rank, tag(in, true));
  grads_in_[{in.micro_batch, in.chunk}] = g;
}

// Both ends send their gradient and add the other's: the same sum a + b on
// both (float addition commutes), so the copies stay bit-identical.
void PipelineEngine::exec_reduce_tied_grads(const Instr&) {
  if (!holds_tied()) return;
  // The planted bug: the sum is forgotten (Megatron's
  // _allreduce_word_embedding_grads left out): each copy would step on its
  // own stage's part, and the two copies of wte drift apart.
  if (planted_bug() == PlantedBug::SkipTiedEmbeddingSum) return;
  NoGradGuard no_grad;
  Tensor g = tied_.grad();
  if (!g.defined()) {
    g = zeros(tied_.shape(), DType::F32, device());
    tied_.set_grad(g);
  }
  refuse_placement(g, MeshAxis::Embedding, Placement::Kind::Replicated,
                   "tied embedding gradient sum",
                   "it was already summed over the first and last stage (a reduction done twice?)");
  const int peer = rank_ == 0 ? p_ - 1 : 0;
  Tensor mine = clone(detach(g));
  Tensor theirs = Tensor::empty(tied_.shape(), DType::F32, device());
  ms::Work w = pp_.isend(mine, peer, Communicator::kMaxUserTag);
  pp_.recv(theirs, peer, Communicator::kMaxUserTag);
  w.wait();
  add_(g, theirs);
  set_placement(g, MeshAxis::Embedding, Placement::replicated());
}

void PipelineEngine::exec_reduce_grads(const Instr&) {
  if (hooks_->reduce_grads) hooks_->reduce_grads();
}

void PipelineEngine::exec_optimizer_step(const Instr&) {
  if (hooks_->optimizer_step) hooks_->optimizer_step();
}

}  // namespace ms::pp
