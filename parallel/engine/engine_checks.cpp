// What the engine refuses before it builds anything: ds_config sections and
// combinations it does not run (check_engine_supports) and expert
// parallelism's constraints (check_expert_parallel). Pure checks of the
// config, so every rank reaches the same verdict before any collective.

#include "parallel/engine/engine.h"
#include "tensor/error.h"

namespace ms {

void check_expert_parallel(const DsConfig& c, const GPTConfig& model) {
  const int64_t ep = c.moe.ep_size, E = model.moe.experts;
  MS_CHECK(E > 0, c.source, ": moe.ep_size ", ep,
           " needs a mixture of experts (moe.num_experts "
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
  // DeepSpeed engine.py _configure_zero_optimizer: assert not self.has_moe_layers,
  // "MoE not supported with Stage 3".
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
  MS_CHECK(comm.empty() || comm == "fp32" || comm == half, c.source, ": communication_data_type \"",
           comm, "\" with ", half, ".enabled: valid are \"fp32\" or \"", half, "\"");
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

}  // namespace ms
