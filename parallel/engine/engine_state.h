// Engine::State: what one engine handle holds (the cut model, the mesh, the
// optimizers, the counters), shared by the engine's own .cpp files and
// private to them: engine.cpp (forward / backward / step), initialize.cpp
// (ms::initialize builds it), engine_weights.cpp and engine_checkpoint.cpp.
#pragma once
#include <cstdint>
#include <memory>

#include "parallel/cp/cp_gpt.h"
#include "parallel/engine/engine.h"
#include "parallel/engine/lr_schedules.h"
#include "parallel/engine/pipeline.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_optimizer.h"
#include "parallel/tp/tp_gpt.h"

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
  bool ep_serial = false;                      // gather_model made the MoE layers whole and local
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

}  // namespace ms
