// ms::initialize (DeepSpeed's deepspeed.initialize): cuts the serial GPT for
// the config's layout (tp, cp, activation checkpointing, pipeline stages),
// builds the optimizers over their gradient groups (ZeRO over dp × cp; under
// ep the dense parameters there and the experts over the expert-dp group) and
// the LR scheduler. The loop those pieces run is engine.cpp.

#include <limits>
#include <utility>

#include "nn/checkpointed_block.h"
#include "optim/optimizer.h"
#include "parallel/engine/engine_state.h"
#include "parallel/zero/mixed_precision.h"
#include "tensor/error.h"

namespace ms {

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

Initialized initialize(std::shared_ptr<GPT> model, const DsConfig& config, Communicator world,
                       InitOptions opts) {
  MS_CHECK(model != nullptr, "ms::initialize: no model given");
  check_engine_supports(config);
  const int64_t tp = config.tensor_parallel.size, pp = config.pipeline.stages;
  const int64_t dp = config.dp_world_size, cp = config.context_parallel.size;
  MS_CHECK(tp * pp * dp * cp == world.size(), config.source, ": tensor_parallel.size ", tp,
           " × pipeline.stages ", pp,
           cp > 1 ? str_cat(" × sequence_parallel_size ", cp) : std::string(),
           " × the data-parallel size ", dp, " = ", tp * pp * dp * cp, " ranks, but the job has ",
           world.size(), " (resolve the config for the job's ranks: load_ds_config_for_ranks)");
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
    s->cp = std::make_shared<CpGPT>(s->tp ? s->tp->gpt_handle() : s->serial, s->tp, s->mesh.cp(),
                                    config.context_parallel.algo);
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
    PipelineSettings ps{
        config.train_micro_batch_size_per_gpu, T,
        config.gradient_accumulation_steps,    config.pipeline.schedule,
        config.pipeline.virtual_stages,        config.activation_checkpointing.enabled};
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
    experts.axis = MeshAxis::ExpertDP;
    s->zero = std::make_unique<ZeroOptimizer>(s->gpt(), s->mesh.dp_cp(), dense, factory);
    s->expert_zero = std::make_unique<ZeroOptimizer>(s->gpt(), s->ep->expert_dp, experts, factory);
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

}  // namespace ms
