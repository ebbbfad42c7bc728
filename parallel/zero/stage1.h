// ZeRO stage 1 (P_os): partition the optimizer state.
//
// Adam keeps 2 (fp32: m, v) to 3 (mixed precision: + master weights) extra
// copies of the model — most of the memory. Stage 1 observes that rank r only
// needs the optimizer state of the parameters it updates, so it makes each
// rank update only its 1/D slice of the flat parameter buffer:
//   backward: full gradients accumulate locally, exactly as in DDP;
//   step:     reduce-scatter the gradients (rank r receives the AVERAGE of
//             slice r, and nothing else), update slice r with the optimizer
//             (state for slice r only), all-gather the slices so every rank
//             has all updated parameters again.
// Communication: reduce-scatter Ψ + all-gather Ψ = 2Ψ per step, the same as
// DDP's all-reduce (which IS a reduce-scatter followed by an all-gather).
// Memory per rank: 4Ψ params + 4Ψ grads + KΨ/D optimizer state.
#pragma once
#include "parallel/zero/stage.h"

namespace ms {

class ZeroStage1 : public ZeroShardedStage {
 public:
  // Collective over `dp`: one group, the whole model.
  ZeroStage1(std::vector<Tensor> params, Communicator dp,
             std::optional<DType> grad_dtype = std::nullopt);

  void set_gradient_sync(bool) override {}  // stage 1 communicates only in the step
  void reduce_gradients() override;
  void after_step() override;
  void count_memory(MemoryCounter& counter) const override;
  size_t layout_bytes(size_t optimizer_bytes_per_param) const override;

 private:
  void on_grad_ready(int param) override;

  std::vector<Tensor>
      full_grads_;                 // per group: the full gradient, flat (parameters' .grad view it)
  std::vector<Tensor> grad_slot_;  // per parameter: its slot in full_grads_
};

}  // namespace ms
