// The pipeline side of the engine (parallel/engine/engine.h) under
// pipeline.stages > 1, around parallel/pp/pipeline_engine.h: which parameters
// this rank trains, one step through the schedule, the stages gathered back
// into every rank's model (to evaluate, sample and save), the traffic
// formula, and the measured timeline beside the simulated one.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "nn/data.h"
#include "parallel/comm/ledger.h"
#include "parallel/mesh.h"
#include "parallel/pp/pipeline_engine.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

// What the pipeline needs of the run: the micro-batch shape, how many per
// step (DeepSpeed: gradient_accumulation_steps) and the schedule.
struct PipelineSettings {
  int64_t B = 0, T = 0;           // micro-batch (B, T)
  int64_t micro_batches = 1;      // per optimizer step
  std::string schedule = "1f1b";  // gpipe | 1f1b | interleaved
  int64_t virtual_stages = 1;     // model chunks per rank (interleaved)
  bool checkpoint_activations = false;  // blocks recompute in backward: their tp collectives repeat
};

class TrainPipeline {
 public:
  // Collective over mesh.pp(). `gpt` is this rank's whole model object (at tp
  // shard shapes under --tp); `parts` runs its pieces; `activation` the
  // shape between stages, {B, T, C}.
  TrainPipeline(const PipelineSettings& c, GPT& gpt, pp::StageModel parts, Mesh& mesh,
                std::vector<int64_t> activation);

  // For ZeroOptimizer: this stage's parameters and its tied copy of wte.
  ZeroPipeline zero_options() const;

  // One optimizer step of the micro-batches through the schedule, the
  // reduction and the optimizer step included; load(mb) gives micro-batch mb
  // (0 .. micro_batches − 1) of this step. Returns the last stage's mean loss
  // there, 0 on other stages (broadcast_loss makes it everyone's).
  double step(const std::function<Batch(int)>& load, ZeroOptimizer& engine, double lr,
              double max_norm, double* norm);
  double broadcast_loss(double loss) { return engine_->broadcast_loss(loss); }

  // Collective over pp: every parameter broadcast from the stage that trains
  // it, so every rank's model is the whole current model (before evaluating,
  // sampling or saving; a stage only keeps its own parameters up to date).
  void gather_stages();

  // Collective over pp and dp: the mean validation loss over `batches`
  // global batches, each forwarded through the stages (no rank runs the
  // whole model); the same windows as the serial evaluation (cli/train.cpp).
  double evaluate(const TokenData& data, int64_t batches);

  StepFormula traffic_formula() const;
  // The tp group of this rank's stage (parallel/pp/traffic.h).
  StepFormula tp_traffic_formula(int tp) const;

  // Collective over pp (call on every rank after training): the last step's
  // measured bubble and activations held beside the formulas and the
  // simulator, as text for rank 0 (empty elsewhere); and, if `svg` is given,
  // rank 0 draws the measured timeline there.
  std::string measured_report(const std::string& svg);

 private:
  GPT& gpt_;
  Mesh& mesh_;
  PipelineSettings c_;
  std::vector<int> owner_;  // per parameter: the pp rank that trains it
  pp::StageParams mine_;
  std::unique_ptr<pp::PipelineEngine> engine_;
  std::vector<int64_t> activation_;
};

}  // namespace ms
