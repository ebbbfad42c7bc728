#include "parallel/engine/engine.h"

#include <limits>
#include <utility>

#include "autograd/ops.h"
#include "nn/checkpointed_block.h"
#include "optim/optimizer.h"
#include "parallel/engine/lr_schedules.h"
#include "parallel/cp/cp_gpt.h"
#include "parallel/engine/pipeline.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_optimizer.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/mixed_precision.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

struct Engine::State {
  DsConfig config;
  Mesh mesh;
  std::shared_ptr<GPT> serial;  // without tp
  std::shared_ptr<TpGPT> tp;    // with tp (serial is then unset)
  std::shared_ptr<CpGPT> cp;    // with cp: wraps the serial model or the TpGPT
  std::unique_ptr<TrainPipeline> pipeline;
  std::unique_ptr<ZeroOptimizer> zero;         // the dense parameters under ep (all otherwise)
  std::unique_ptr<EpGroups> ep;                // expert parallelism (moe.ep_size > 1)
  std::unique_ptr<ZeroOptimizer> expert_zero;  // this rank's experts, over the expert-dp group
  bool ep_serial = false;  // gather_model made the MoE layers whole and local
  std::unique_ptr<LRScheduler> scheduler;
  int64_t num_params = 0, micro_steps = 0, global_steps = 0;
  double last_norm = 0;

  State(const DsConfig& c, Communicator world)
      : config(c),
        mesh(world, static_cast<int>(c.dp_world_size), static_cast<int>(c.tensor_parallel.size),
             static_cast<int>(c.pipeline.stages), static_cast<int>(c.context_parallel.size)) {}
  GPT& gpt() { return tp ? tp->gpt() : *serial; }
  int64_t gas() const { return config.gradient_accumulation_steps; }
  bool boundary() const { return (micro_steps + 1) % gas() == 0; }
  CheckpointTarget checkpoint_target();

  // The optimizer update at the accumulation boundary (DeepSpeed's
  // _take_model_step): clip, update at the scheduler's lr, step the scheduler.
  // A step skipped on overflow (mixed precision) leaves the schedule where it
  // was but counts as a global step, as DeepSpeed's skipped_steps does.
  void update() {
    if (expert_zero) {
      last_norm = ep_optimizer_step(*zero, *expert_zero, *ep, scheduler->get_lr(),
                                    config.gradient_clipping);
      scheduler->step();
      ++global_steps;
      return;
    }
    last_norm = zero->step(scheduler->get_lr(), config.gradient_clipping);
    if (!zero->skipped()) scheduler->step();
    ++global_steps;
  }
};

namespace {

std::unique_ptr<Optimizer> make_optimizer(const DsOptimizerConfig& o, std::vector<Tensor> ps) {
  if (o.kind == DsOptimizerConfig::Kind::kSGD)
    return std::make_unique<SGD>(std::move(ps), o.lr, o.momentum, o.weight_decay);
  return std::make_unique<AdamW>(std::move(ps), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
}

// The pieces a pipeline stage runs, through the tp cut when there is one.
pp::StageModel stage_model(Engine::State& s) {
  pp::StageModel parts;
  GPT& g = s.gpt();
  if (s.tp) {
    TpGPT& tp = *s.tp;
    parts.embed = [&tp](const Tensor& x) { return tp.embed(x); };
    parts.head_loss = [&tp](const Tensor& x, const Tensor& y) { return tp.head_loss(x, y); };
  } else {
    parts.embed = [&g](const Tensor& x) { return g.embed(x); };
    parts.head_loss = [&g](const Tensor& x, const Tensor& y) { return g.head_loss(x, y); };
  }
  parts.block = [&g](int64_t l, const Tensor& x) { return g.blocks()[l]->forward(x); };
  return parts;
}

}  // namespace

MixedPrecision mixed_precision(const DsConfig& c) {
  MixedPrecision mp;
  mp.dtype = c.bf16_enabled ? DType::BF16 : c.fp16.enabled ? DType::F16 : DType::F32;
  if (!c.communication_data_type.empty())
    mp.communication_dtype = c.communication_data_type == "fp32"   ? DType::F32
                             : c.communication_data_type == "fp16" ? DType::F16
                                                                   : DType::BF16;
  mp.fp16.loss_scale = c.fp16.loss_scale;
  mp.fp16.initial_scale_power = static_cast<int>(c.fp16.initial_scale_power);
  mp.fp16.loss_scale_window = c.fp16.loss_scale_window;
  mp.fp16.hysteresis = static_cast<int>(c.fp16.hysteresis);
  mp.fp16.min_loss_scale = c.fp16.min_loss_scale;
  return mp;
}

void check_expert_parallel(const DsConfig& c, const GPTConfig& model) {
  const int64_t ep = c.moe.ep_size, E = model.moe.experts;
  MS_CHECK(E > 0, c.source, ": moe.ep_size ", ep, " needs a mixture of experts (moe.num_experts "
           ">= 1; the model is dense)");
  MS_CHECK(E % ep == 0, c.source, ": moe.ep_size ", ep, " does not divide moe.num_experts ", E,
           " (each ep rank holds E/ep whole experts; valid: divisors of ", E, ")");
  const int64_t dp_cp = c.dp_world_size * c.context_parallel.size;
  MS_CHECK(dp_cp % ep == 0, c.source, ": moe.ep_size ", ep,
           " does not divide the data-parallel size ", dp_cp,
           c.context_parallel.size > 1 ? " (dp × sequence_parallel_size)" : "",
           " (the ep groups are carved from the dp ranks, as DeepSpeed's)");
  MS_CHECK(c.tensor_parallel.size == 1 && c.pipeline.stages == 1 && c.context_parallel.size == 1,
           c.source, ": moe.ep_size ", ep, " with tensor_parallel.size ", c.tensor_parallel.size,
           ", pipeline.stages ", c.pipeline.stages, " and sequence_parallel_size ",
           c.context_parallel.size, ": expert parallelism runs over data parallelism only for now");
  MS_CHECK(c.zero_optimization.stage <= 2, c.source, ": moe.ep_size ", ep,
           " with zero_optimization.stage ", c.zero_optimization.stage,
           ": ZeRO-3 with MoE is refused, as DeepSpeed's MoE supports ZeRO 1-2 only (use 0-2)");
  MS_CHECK(!c.bf16_enabled && !c.fp16.enabled, c.source, ": moe.ep_size ", ep,
           " with fp16/bf16: expert parallelism runs in fp32 for now");
  MS_CHECK(!c.zero_optimization.offload_optimizer, c.source, ": moe.ep_size ", ep,
           " with zero_optimization.offload_optimizer: not supported yet (the experts' optimizer "
           "steps on the parameters' device)");
  MS_CHECK(c.device.empty() || c.device == "cpu", c.source, ": moe.ep_size ", ep, " with device \"",
           c.device, "\": expert parallelism runs on the CPU for now");
}

void check_engine_supports(const DsConfig& c) {
  const char* half = c.bf16_enabled ? "bf16" : "fp16";
  const bool mixed = c.bf16_enabled || c.fp16.enabled;
  // Tensor parallelism's vocab-parallel cross entropy and the pipeline's
  // activation messages are f32-only.
  MS_CHECK(!mixed || c.tensor_parallel.size == 1, c.source, ": ", half,
           ".enabled true with tensor_parallel.size ", c.tensor_parallel.size,
           " is not supported yet (16-bit training runs with data parallelism and ZeRO 0-3)");
  MS_CHECK(!mixed || c.pipeline.stages == 1, c.source, ": ", half,
           ".enabled true with pipeline.stages ", c.pipeline.stages,
           " is not supported yet (16-bit training runs with data parallelism and ZeRO 0-3)");
  const std::string& comm = c.communication_data_type;
  MS_CHECK(comm.empty() || mixed, c.source, ": communication_data_type \"", comm,
           "\" needs bf16.enabled or fp16.enabled (in fp32 the gradients are f32)");
  MS_CHECK(comm.empty() || comm == "fp32" || comm == half, c.source,
           ": communication_data_type \"", comm, "\" with ", half, ".enabled: valid are \"fp32\" or \"",
           half, "\"");
  // The activations between stages would be (B, T / tp, C): not built yet.
  MS_CHECK(!(c.tensor_parallel.sequence_parallel && c.pipeline.stages > 1), c.source,
           ": tensor_parallel.sequence_parallel true with pipeline.stages ", c.pipeline.stages,
           " is not supported yet (planned)");
  if (c.context_parallel.size > 1) {
    MS_CHECK(c.pipeline.stages == 1, c.source, ": sequence_parallel_size ", c.context_parallel.size,
             " with pipeline.stages ", c.pipeline.stages,
             " is not supported (context parallelism with pipeline stages is not built)");
    MS_CHECK(!c.tensor_parallel.sequence_parallel, c.source, ": sequence_parallel_size ",
             c.context_parallel.size,
             " with tensor_parallel.sequence_parallel true is not supported yet (both shard the "
             "sequence)");
    MS_CHECK(!mixed, c.source, ": ", half, ".enabled true with sequence_parallel_size ",
             c.context_parallel.size, " is not supported yet (the cp attention runs in f32)");
  }
  MS_CHECK(!c.activation_checkpointing.partition_activations, c.source,
           ": activation_checkpointing.partition_activations true: splitting the checkpointed "
           "inputs over the tensor-parallel ranks is not built yet (use false; the blocks are "
           "still recomputed)");
}

Initialized initialize(std::shared_ptr<GPT> model, const DsConfig& config, Communicator world,
                       InitOptions opts) {
  MS_CHECK(model != nullptr, "ms::initialize: no model given");
  check_engine_supports(config);
  const int64_t tp = config.tensor_parallel.size, pp = config.pipeline.stages;
  const int64_t dp = config.dp_world_size, cp = config.context_parallel.size;
  MS_CHECK(tp * pp * dp * cp == world.size(), config.source, ": tensor_parallel.size ", tp,
           " × pipeline.stages ", pp,
           cp > 1 ? str_cat(" × sequence_parallel_size ", cp) : std::string(),
           " × the data-parallel size ", dp, " = ", tp * pp * dp * cp,
           " ranks, but the job has ", world.size(),
           " (resolve the config for the job's ranks: load_ds_config_for_ranks)");
  const int64_t ep = config.moe.ep_size;
  if (ep > 1) check_expert_parallel(config, model->config());  // before any collective
  auto s = std::make_shared<Engine::State>(config, world);
  s->num_params = model->num_parameters();
  const GPTConfig shape = model->config();

  if (tp > 1) {
    MS_CHECK(shape.n_head % tp == 0, config.source, ": tensor_parallel.size ", tp,
             " does not divide the model's n_head ", shape.n_head, " (", shape.describe(),
             "; each tensor-parallel rank computes n_head / tp whole heads)");
    MS_CHECK(shape.vocab_size % tp == 0, config.source, ": tensor_parallel.size ", tp,
             " does not divide the model's vocab_size ", shape.vocab_size);
    s->tp = std::make_shared<TpGPT>(std::move(model), s->mesh.tp(),
                                    config.tensor_parallel.sequence_parallel);
  } else {
    s->serial = std::move(model);
  }
  if (cp > 1)  // before checkpointing and ZeRO-3 wrap the blocks it replaces or switches
    s->cp = std::make_shared<CpGPT>(s->tp ? s->tp->gpt_handle() : s->serial,
                                    s->tp, s->mesh.cp(), config.context_parallel.algo);
  // Before the memory probe (it measures the wrapped block), the pipeline and
  // ZeRO-3 (whose gathering layer then wraps the checkpointed block).
  if (config.activation_checkpointing.enabled)
    checkpoint_blocks(s->gpt(), config.activation_checkpointing.number_checkpoints.value_or(-1));
  if (opts.before_partition) opts.before_partition(s->gpt());

  if (pp > 1) {
    const int64_t stages = pp * config.pipeline.virtual_stages;
    MS_CHECK(shape.n_layer >= stages, config.source, ": the model has ", shape.n_layer,
             " blocks, fewer than the ", stages, " pipeline stages (pipeline.stages ", pp,
             " × pipeline.virtual_stages ", config.pipeline.virtual_stages,
             "): every stage needs at least one block");
    const int64_t T = opts.seq_len > 0 ? opts.seq_len : shape.block_size;
    PipelineSettings ps{config.train_micro_batch_size_per_gpu, T,
                        config.gradient_accumulation_steps, config.pipeline.schedule,
                        config.pipeline.virtual_stages, config.activation_checkpointing.enabled};
    s->pipeline =
        std::make_unique<TrainPipeline>(ps, s->gpt(), stage_model(*s), s->mesh,
                                        std::vector<int64_t>{ps.B, T, s->gpt().config().n_embd});
  }

  ZeroOptions zo;
  zo.stage = static_cast<int>(config.zero_optimization.stage);
  zo.precision = mixed_precision(config);
  zo.offload_optimizer = config.zero_optimization.offload_optimizer;
  // reduce_bucket_size counts elements (DeepSpeed's unit); our buckets are
  // fp32 bytes. Unset, ZeroOptimizer keeps its own 25 MiB (DDP's default).
  if (config.given.count("zero_optimization.reduce_bucket_size")) {
    const int64_t elems = config.zero_optimization.reduce_bucket_size;
    zo.bucket_bytes = elems > static_cast<int64_t>(std::numeric_limits<size_t>::max() / 4)
                          ? std::numeric_limits<size_t>::max()
                          : static_cast<size_t>(elems) * 4;
  }
  if (s->pipeline) zo.pp = s->pipeline->zero_options();
  if (s->tp)
    zo.tp = ZeroTensorParallel{s->mesh.tp(), s->tp->replicated_mask(),
                               config.tensor_parallel.sequence_parallel};
  ZeroOptimizer::OptimizerFactory factory;
  if (config.optimizer) {
    factory = [o = *config.optimizer](std::vector<Tensor> ps) {
      return make_optimizer(o, std::move(ps));
    };
  } else {
    MS_CHECK(opts.optimizer != nullptr, config.source,
             ": no \"optimizer\" section and no client optimizer given to ms::initialize "
             "(DeepSpeed's initialize(optimizer=...)): one of them must say how to update");
    factory = opts.optimizer;
  }
  // Over dp × cp: the cp ranks of a replica hold the same parameters and
  // their gradients are partial (their positions'), averaged like dp's
  // (Megatron's data-parallel group with_context_parallel=True). Equal to
  // mesh.dp() when cp = 1.
  if (ep > 1) {
    // DeepSpeed's expert / non-expert parameter groups (parallel/ep/ep_optimizer.h).
    s->ep = std::make_unique<EpGroups>(s->mesh.dp_cp(), static_cast<int>(ep));
    install_expert_parallel(s->gpt(), *s->ep);
    const ExpertParams ex = expert_params(s->gpt(), static_cast<int>(ep), s->ep->ep.rank());
    ZeroOptions dense = zo, experts = zo;
    dense.subset = ex.expert;
    dense.subset.flip();  // every parameter that is not an expert's
    experts.subset = ex.local;
    s->zero = std::make_unique<ZeroOptimizer>(s->gpt(), s->mesh.dp_cp(), dense, factory);
    s->expert_zero =
        std::make_unique<ZeroOptimizer>(s->gpt(), s->ep->expert_dp, experts, factory);
  } else {
    s->zero = std::make_unique<ZeroOptimizer>(s->gpt(), s->mesh.dp_cp(), zo, factory);
  }

  // The first update runs at schedule_lr(−1) = 0 for DeepSpeed's schedules:
  // their constructors set the optimizer's lr from get_lr() before any step.
  const double base_lr = s->zero->optimizer().lr();
  if (config.scheduler) {
    s->scheduler = std::make_unique<LRScheduler>(
        [sc = *config.scheduler, base_lr](int64_t k) {
          return engine::schedule_lr(sc, base_lr, k - 1);
        },
        engine::schedule_type_name(config.scheduler->kind));
  } else if (opts.lr_scheduler) {
    s->scheduler = std::make_unique<LRScheduler>(opts.lr_scheduler, opts.lr_scheduler_name);
  } else {
    s->scheduler =
        std::make_unique<LRScheduler>([base_lr](int64_t) { return base_lr; }, "constant");
  }
  Engine e(s);
  return {e, s->zero->optimizer(), *s->scheduler};
}

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

std::shared_ptr<GPT> Engine::gather_model() {
  s_->zero->gather_full_parameters();                    // ZeRO-3: the dp shards
  if (s_->ep) {  // ep: the other ranks' experts, then one process's forward (sampling)
    gather_experts(s_->gpt(), *s_->ep);
    uninstall_expert_parallel(s_->gpt());
    s_->ep_serial = true;
  }
  if (s_->pipeline) s_->pipeline->gather_stages();       // pp: every stage's part
  if (s_->tp) return s_->tp->gather_serial();  // tp: the shards (a fresh serial GPT)
  // cp: the serial model's blocks run the cp attention (a collective): a copy.
  return s_->cp ? s_->cp->copy_serial() : s_->serial;
}

std::map<std::string, Tensor> Engine::fp32_weights(const GPT& whole) {
  std::map<std::string, Tensor> out;
  const auto named = whole.named_parameters();
  ZeroOptimizer& z = *s_->zero;
  if (!z.precision().enabled()) {  // the optimizer trains the parameters themselves
    for (const auto& [name, param] : named) out[name] = param;
    return out;
  }
  // Mixed precision runs without tp and pp (mixed_precision_from_flags), so
  // the fragments index `whole`'s parameters and only dp splits the masters.
  MS_ASSERT(!s_->tp && !s_->pipeline, "fp32_weights: mixed precision under tp or pp");
  std::vector<Tensor> full;
  for (const auto& named_param : named) full.push_back(zeros(named_param.second.shape()));
  const std::vector<Tensor>& masters = z.optimizer().params();
  for (const ZeroOptimizer::Fragment& f : z.fragments()) {
    Tensor dst = narrow(flatten(full[f.param]), 0, f.param_begin, f.numel);  // a view
    copy_(dst, narrow(flatten(detach(masters.at(f.tensor))), 0, f.tensor_begin, f.numel));
  }
  // Stages 1-3: each dp rank holds disjoint slices (zeros elsewhere), so
  // their sum is the whole; stage 0: every rank holds every master.
  if (z.stage() > 0)
    for (Tensor& t : full) s_->mesh.dp_cp().all_reduce(t);
  for (size_t i = 0; i < named.size(); ++i) out[named[i].first] = full[i];
  return out;
}

void Engine::set_global_steps(int64_t steps) {
  MS_CHECK(steps >= 0, "engine.set_global_steps: ", steps, " must be >= 0");
  s_->global_steps = steps;
  s_->micro_steps = steps * s_->gas();
}

CheckpointTarget Engine::State::checkpoint_target() {
  const DsConfig& c = config;
  CheckpointTarget target{
      mesh.world(), gpt(), *zero,
      // The cp ranks hold replicated parameters and ZeRO partitions over
      // dp × cp, so to the checkpoint they are data-parallel ranks: dp × cp
      // ranks at rank cp + dp·CP (tp + that·TP is the world rank, as with dp).
      CheckpointLayout{static_cast<int>(c.dp_world_size * c.context_parallel.size),
                       static_cast<int>(c.tensor_parallel.size),
                       static_cast<int>(c.pipeline.stages),
                       static_cast<int>(c.zero_optimization.stage),
                       static_cast<int>(c.pipeline.virtual_stages),
                       c.tensor_parallel.sequence_parallel, mesh.dp_cp().rank(), mesh.tp_rank(),
                       mesh.pp_rank()},
      pipeline ? pipeline->zero_options().tied_copy : std::vector<bool>{}};
  target.layout.cp = static_cast<int>(c.context_parallel.size);
  if (expert_zero) {  // ep: the experts' pieces from their own optimizer
    target.expert_optimizer = expert_zero.get();
    target.expert_dp_rank = ep->expert_dp.rank();
  }
  return target;
}

std::string Engine::save_checkpoint(const std::string& dir, const std::string& tag,
                                    const std::map<std::string, std::string>& client_state) {
  MS_CHECK(s_->micro_steps % s_->gas() == 0,
           "engine.save_checkpoint: call it at an accumulation boundary (after the step() that "
           "updated); ", s_->micro_steps % s_->gas(), " of ", s_->gas(),
           " micro-batches of this step have run");
  CheckpointTarget target = s_->checkpoint_target();
  CheckpointMeta meta;
  meta.step = s_->global_steps;
  meta.skipped_steps = s_->zero->skipped_steps();
  if (const LossScaler* scaler = s_->zero->loss_scaler()) meta.loss_scale = scaler->state();
  meta.config = client_state;
  return ms::save_checkpoint(dir, tag, target, meta);
}

CheckpointMeta Engine::load_checkpoint(const std::string& dir, const std::string& tag) {
  CheckpointTarget target = s_->checkpoint_target();
  CheckpointMeta meta = ms::load_checkpoint(dir, tag, target);
  set_global_steps(meta.step);
  s_->zero->set_skipped_steps(meta.skipped_steps);
  s_->scheduler->set_last_batch_iteration(meta.step - meta.skipped_steps - 1);
  LossScaler* scaler = s_->zero->loss_scaler();
  MS_CHECK(meta.loss_scale.has_value() == (scaler != nullptr), "engine.load_checkpoint('", dir,
           "', '", tag, "'): the checkpoint was saved ",
           meta.loss_scale ? "with an fp16 loss scaler" : "without a loss scaler (not fp16)",
           ", but this run ", scaler ? "is fp16" : "is not fp16",
           ": resume with the same precision");
  if (scaler) scaler->load_state(*meta.loss_scale);
  return meta;
}

}  // namespace ms
