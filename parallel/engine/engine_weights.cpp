// The whole model out of the engine's pieces: gather_model (every dp shard,
// expert, stage and tp shard into one serial GPT, for sampling and saving)
// and fp32_weights (what --save-weights writes: the fp32 masters of a 16-bit
// run).

#include "autograd/ops.h"
#include "parallel/comm/placement.h"
#include "parallel/engine/engine_state.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

std::shared_ptr<GPT> Engine::gather_model() {
  s_->zero->gather_full_parameters();  // ZeRO-3: the dp shards
  if (s_->ep) {  // ep: the other ranks' experts, then one process's forward (sampling)
    gather_experts(s_->gpt(), *s_->ep);
    uninstall_expert_parallel(s_->gpt());
    s_->ep_serial = true;
  }
  if (s_->pipeline) s_->pipeline->gather_stages();  // pp: every stage's part
  if (s_->tp) return s_->tp->gather_serial();       // tp: the shards (a fresh serial GPT)
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
  // their sum is the whole; stage 0: every rank holds every master. Until
  // that sum a tensor is this rank's ZeRO partition of the parameter
  // (row-major, so along dim 0): sharded(0) over dp, which a whole-model save
  // refuses (GPT::save_safetensors).
  if (z.stage() > 0) {
    Communicator& dp = s_->mesh.dp_cp();
    for (size_t i = 0; i < full.size(); ++i)
      place_over(full[i], MeshAxis::DP, dp, Placement::sharded(0, full[i].dim()), named[i].first);
    // The planted bug: the slices are never brought together (zero_to_fp32
    // without the merge): each rank's save holds its partition only.
    if (planted_bug() != PlantedBug::SaveShardAsWhole)
      for (Tensor& t : full) {
        dp.all_reduce(t);
        place_over(t, MeshAxis::DP, dp, Placement::replicated());
      }
  }
  for (size_t i = 0; i < named.size(); ++i) out[named[i].first] = full[i];
  return out;
}

}  // namespace ms
