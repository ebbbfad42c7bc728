// Mixed-precision training inside ZeroOptimizer: 16-bit model, fp32 masters.
//
// Micikevicius et al. 2018 ("Mixed Precision Training") and the ZeRO paper's
// accounting (§3: 2Ψ fp16 parameters + 2Ψ fp16 gradients + 12Ψ optimizer
// state = fp32 master weights, momentum and variance, 4 + 4 + 4):
//   - the model's parameters are bf16 or f16 (Module::cast_parameters), so
//     forward and backward run on 16-bit storage (autograd/mixed.h) and the
//     parameter gradients come out 16-bit;
//   - the optimizer never sees them: it is built over fp32 master copies of
//     exactly the tensors the stage trains (all parameters at stage 0, this
//     rank's slices at stages 1-3, like DeepSpeed's
//     single_partition_of_fp32_groups), and keeps its state (AdamW's m, v)
//     in fp32 beside them;
//   - each step: the reduced 16-bit gradients are read into fp32 master
//     gradients (allocated for the step only, as DeepSpeed does), unscaled,
//     clipped and applied to the masters; the masters are then rounded into
//     the 16-bit parameters (round-to-nearest-even), and the stage's
//     all-gather moves 16-bit values.
// fp16 adds dynamic loss scaling (optim/loss_scaler.h, DeepSpeed's algorithm)
// and a step that every rank skips when any rank's gradients overflowed
// (parallel/comm/overflow.h); bf16 has fp32's exponent range and no scaler,
// but an overflowing step is still skipped (DeepSpeed's bf16
// check_grad_overflow, on by default).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "optim/loss_scaler.h"
#include "tensor/tensor.h"

namespace ms {

// What ds_config's "fp16" / "bf16" sections turn into (the engine fills it;
// `minispeed train --bf16/--fp16 ...` too).
struct MixedPrecision {
  // The model's parameters: F32 = mixed precision off (everything as before),
  // BF16 ("bf16": {"enabled": true}), F16 ("fp16": {"enabled": true}).
  DType dtype = DType::F32;
  // The dtype gradients are accumulated in and reduced in (DeepSpeed's
  // "communication_data_type"). Unset: the model's 16-bit dtype, DeepSpeed's
  // default (ZeRO reduces the gradients in their own dtype unless told
  // otherwise); F32 reduces in fp32 at twice the traffic and 4Ψ of gradients.
  std::optional<DType> communication_dtype;
  // The "fp16" keys (loss_scale, initial_scale_power, loss_scale_window,
  // hysteresis, min_loss_scale); read only when dtype == F16.
  LossScalerConfig fp16;

  bool enabled() const { return dtype != DType::F32; }
  DType grad_dtype() const { return communication_dtype.value_or(dtype); }
  // Errors name the flag/key and the valid choices.
  void validate() const;
  // "mixed precision: bf16 parameters/gradients/activations, fp32 masters and
  // optimizer state, gradients reduced in bf16" (+ the fp16 scaler settings).
  std::string describe() const;
};

// `minispeed train`'s flags (ds_config's keys in brackets): --bf16 [bf16.enabled],
// --fp16 [fp16.enabled], --loss-scale, --initial-scale-power,
// --loss-scale-window, --hysteresis, --min-loss-scale [fp16.*],
// --communication-data-type ("" | fp32 | fp16 | bf16). Errors name the flag.
// tp > 1 and pp > 1 are refused with mixed precision (not supported yet:
// tensor parallelism's vocab-parallel cross entropy and the pipeline's
// activation messages are f32-only).
MixedPrecision mixed_precision_from_flags(bool bf16, bool fp16, double loss_scale,
                                          int64_t initial_scale_power, int64_t loss_scale_window,
                                          int64_t hysteresis, double min_loss_scale,
                                          const std::string& communication_data_type, int64_t tp,
                                          int64_t pp);

// fp32 master copies of the 16-bit tensors a ZeRO stage trains; the masters
// are what the optimizer is built over.
//
// ZeRO-Offload (Ren et al. 2021, DeepSpeed's offload_optimizer "cpu"): the
// masters live on the CPU while the model side is on the device, and each
// step moves what DeepSpeed's stage_1_and_2.py moves: the reduced gradient
// slice comes down as fp32 (widened on the device, then D2H: DeepSpeed's
// non_blocking copy_ into its fp32 CPU buffer converts on the GPU), and after
// the CPU step the updated slice goes up in the model's dtype (rounded on the
// host, then H2D: bit16_partitions[...].copy_(fp32_partition), a blocking
// copy_, which converts on the CPU). transfer_bytes() counts both.
class MasterWeights {
 public:
  // model_side: the stage's trainable() tensors (16-bit, or f32 under an fp32
  // offload). Masters start as their exact f32 values, on `master_device`.
  MasterWeights(std::vector<Tensor> model_side, Device master_device);
  // Bytes moved device -> host (gradients) and host -> device (parameters)
  // since construction; both 0 when the masters share the model's device.
  struct Transfers {
    int64_t d2h = 0, h2d = 0;
  };
  Transfers transfer_bytes() const { return transfers_; }
  Device master_device() const { return master_device_; }

  const std::vector<Tensor>& masters() const { return masters_; }
  // Each master's .grad = the f32 value of its model-side .grad (reduced by
  // the stage); a model-side tensor with no gradient leaves its master none.
  void load_grads();
  void drop_grads();
  // The model-side tensors take the masters' values, rounded to 16-bit.
  void store_params();
  size_t master_bytes() const;  // 4 per trained element
  size_t grad_bytes() const;    // the master gradients alive right now

 private:
  std::vector<Tensor> model_side_, masters_;
  Device master_device_;
  Transfers transfers_;
};

}  // namespace ms
