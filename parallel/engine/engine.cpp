// The engine's training loop, DeepSpeed's forward / backward / step (and
// train_batch under a pipeline), with its accumulation counters and
// accessors. Built by initialize.cpp; its state: engine_state.h.

#include "parallel/engine/engine.h"

#include <utility>

#include "autograd/ops.h"
#include "parallel/engine/engine_state.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

Tensor Engine::forward(const Tensor& x, const Tensor& y) {
  MS_CHECK(!s_->pipeline, s_->config.source, ": pipeline.stages ", s_->config.pipeline.stages,
           ": use engine.train_batch (a pipeline runs whole steps through its schedule; "
           "DeepSpeed's PipelineEngine refuses forward/backward/step too)");
  if (s_->ep && std::exchange(s_->ep_serial, false)) install_expert_parallel(s_->gpt(), *s_->ep);
  if (s_->cp) return s_->cp->loss(x, y);  // this rank's positions' mean
  return s_->tp ? s_->tp->loss(x, y) : s_->serial->loss(x, y);
}

void Engine::backward(const Tensor& loss) {
  MS_CHECK(!s_->pipeline, "engine.backward under a pipeline: use engine.train_batch");
  s_->zero->set_gradient_sync(s_->boundary());
  if (s_->expert_zero) s_->expert_zero->set_gradient_sync(s_->boundary());
  const int64_t g = s_->gas();
  // fp16: times the loss scale (DeepSpeed's backward scales by 1/gas, then
  // the loss scaler multiplies).
  s_->zero->scale_loss(g > 1 ? mul(loss, 1.0 / static_cast<double>(g)) : loss).backward();
}

void Engine::step() {
  MS_CHECK(!s_->pipeline, "engine.step under a pipeline: use engine.train_batch");
  if (s_->boundary()) s_->update();
  ++s_->micro_steps;
}

double Engine::train_batch(const std::function<Batch()>& next) {
  return reduce_loss(train_batch_unreduced(next));
}

double Engine::train_batch_unreduced(const std::function<Batch()>& next) {
  State& s = *s_;
  const int64_t g = s.gas();
  MS_CHECK(s.micro_steps % g == 0, "engine.train_batch after ", s.micro_steps % g,
           " micro-steps of an unfinished accumulation of ", g);
  if (s.pipeline) {
    std::vector<Batch> batches;
    for (int64_t i = 0; i < g; ++i) batches.push_back(next());
    const double lr = s.scheduler->get_lr();
    const double loss =
        s.pipeline->step([&](int mb) { return batches.at(static_cast<size_t>(mb)); }, *s.zero, lr,
                         s.config.gradient_clipping, &s.last_norm);
    if (!s.zero->skipped()) s.scheduler->step();
    ++s.global_steps;
    s.micro_steps += g;
    return loss;
  }
  double sum = 0;
  for (int64_t i = 0; i < g; ++i) {
    Batch b = next();
    Tensor l = forward(b.x, b.y);
    sum += l.item();
    backward(l);
    step();
  }
  return sum / static_cast<double>(g);
}

double Engine::reduce_loss(double loss) {
  State& s = *s_;
  if (s.pipeline) loss = s.pipeline->broadcast_loss(loss);  // it exists on the last stage
  // The tp ranks of a replica already hold the same loss; the cp ranks hold
  // their positions' means over equal token counts, so the mean over dp × cp
  // is the global batch's mean.
  if (s.mesh.dp_cp().size() > 1) {
    Tensor t = full({1}, loss, DType::F64);
    s.mesh.dp_cp().all_reduce(t, ReduceOp::Avg);
    loss = t.item();
  }
  return loss;
}

bool Engine::is_gradient_accumulation_boundary() const {
  return s_->boundary();
}
int64_t Engine::global_steps() const {
  return s_->global_steps;
}
int64_t Engine::micro_steps() const {
  return s_->micro_steps;
}
int64_t Engine::gradient_accumulation_steps() const {
  return s_->gas();
}
int64_t Engine::train_micro_batch_size_per_gpu() const {
  return s_->config.train_micro_batch_size_per_gpu;
}
double Engine::get_lr() const {
  return s_->scheduler->get_lr();
}
double Engine::last_grad_norm() const {
  return s_->last_norm;
}
void Engine::train() {
  module().train();
}
void Engine::eval() {
  module().eval();
}
Mesh& Engine::mesh() {
  return s_->mesh;
}
const DsConfig& Engine::config() const {
  return s_->config;
}
GPT& Engine::gpt() {
  return s_->gpt();
}
Module& Engine::module() {
  if (s_->cp) return *s_->cp;
  return s_->tp ? static_cast<Module&>(*s_->tp) : static_cast<Module&>(*s_->serial);
}
TpGPT* Engine::tp() {
  return s_->tp.get();
}
TrainPipeline* Engine::pipeline() {
  return s_->pipeline.get();
}
ZeroOptimizer& Engine::zero_optimizer() {
  return *s_->zero;
}
ZeroOptimizer* Engine::expert_optimizer() {
  return s_->expert_zero.get();
}
EpGroups* Engine::ep() {
  return s_->ep.get();
}
Optimizer& Engine::optimizer() {
  return s_->zero->optimizer();
}
LRScheduler& Engine::lr_scheduler() {
  return *s_->scheduler;
}
int64_t Engine::num_parameters() const {
  return s_->num_params;
}

}  // namespace ms
