// The engine's checkpoints (DeepSpeed's engine.save_checkpoint /
// load_checkpoint): the layout this rank holds as a CheckpointTarget, and the
// counters, LR schedule position and loss scale a resume continues from. The
// format itself: parallel/engine/checkpoint.h.

#include "parallel/engine/engine_state.h"
#include "tensor/error.h"

namespace ms {

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
      CheckpointLayout{
          static_cast<int>(c.dp_world_size * c.context_parallel.size),
          static_cast<int>(c.tensor_parallel.size), static_cast<int>(c.pipeline.stages),
          static_cast<int>(c.zero_optimization.stage), static_cast<int>(c.pipeline.virtual_stages),
          c.tensor_parallel.sequence_parallel, mesh.dp_cp().rank(), mesh.tp_rank(), mesh.pp_rank()},
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
           "updated); ",
           s_->micro_steps % s_->gas(), " of ", s_->gas(), " micro-batches of this step have run");
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
