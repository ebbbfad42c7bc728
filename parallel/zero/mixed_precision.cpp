#include "parallel/zero/mixed_precision.h"

#include "autograd/grad_mode.h"
#include "autograd/mixed.h"
#include "autograd/ops.h"
#include "parallel/comm/staging.h"

namespace ms {

void MixedPrecision::validate() const {
  MS_CHECK(dtype == DType::F32 || mixed::is_half(dtype), "mixed precision: the model dtype ",
           dtype_name(dtype), " is not one of f32 (off), bf16 (--bf16), f16 (--fp16)");
  if (communication_dtype) {
    MS_CHECK(enabled(), "communication_data_type ", dtype_name(*communication_dtype),
             " needs mixed precision (--bf16 or --fp16): in fp32 the gradients are f32");
    MS_CHECK(*communication_dtype == DType::F32 || *communication_dtype == dtype,
             "communication_data_type ", dtype_name(*communication_dtype), " with a ",
             dtype_name(dtype), " model: valid are fp32 or the model's own ", dtype_name(dtype));
  }
  if (dtype == DType::F16) make_loss_scaler(fp16);  // checks the fp16.* values, names the key
}

MixedPrecision mixed_precision_from_flags(bool bf16, bool fp16, double loss_scale,
                                          int64_t initial_scale_power, int64_t loss_scale_window,
                                          int64_t hysteresis, double min_loss_scale,
                                          const std::string& communication_data_type, int64_t tp,
                                          int64_t pp) {
  MS_CHECK(!(bf16 && fp16), "--bf16 and --fp16 cannot both be given (DeepSpeed: 'bfloat16 and "
                            "fp16 modes cannot be simultaneously enabled')");
  MixedPrecision mp;
  mp.dtype = bf16 ? DType::BF16 : fp16 ? DType::F16 : DType::F32;
  if (mp.enabled()) {
    MS_CHECK(tp == 1, "--", bf16 ? "bf16" : "fp16", " with --tp ", tp,
             " is not supported yet: tensor parallelism's vocab-parallel cross entropy and "
             "mappings are f32-only; use --tp 1");
    MS_CHECK(pp == 1, "--", bf16 ? "bf16" : "fp16", " with --pp ", pp,
             " is not supported yet: the pipeline sends f32 activations between stages; use --pp 1");
  }
  if (!communication_data_type.empty()) {
    const std::string& c = communication_data_type;
    MS_CHECK(c == "fp32" || c == "fp16" || c == "bf16", "--communication-data-type ", c,
             " is not one of fp32, fp16, bf16");
    mp.communication_dtype = c == "fp32" ? DType::F32 : c == "fp16" ? DType::F16 : DType::BF16;
    MS_CHECK(mp.enabled(), "--communication-data-type ", c,
             " needs --bf16 or --fp16 (in fp32 the gradients are f32)");
    MS_CHECK(*mp.communication_dtype == DType::F32 || *mp.communication_dtype == mp.dtype,
             "--communication-data-type ", c, " with --", bf16 ? "bf16" : "fp16",
             ": valid are fp32 or ", bf16 ? "bf16" : "fp16");
  }
  MS_CHECK(initial_scale_power >= 0 && initial_scale_power <= 127, "--initial-scale-power ",
           initial_scale_power, " must be in [0, 127]");
  MS_CHECK(hysteresis >= 1 && hysteresis <= (1 << 30), "--hysteresis ", hysteresis,
           " must be >= 1");
  mp.fp16.loss_scale = loss_scale;
  mp.fp16.initial_scale_power = static_cast<int>(initial_scale_power);
  mp.fp16.loss_scale_window = loss_scale_window;
  mp.fp16.hysteresis = static_cast<int>(hysteresis);
  mp.fp16.min_loss_scale = min_loss_scale;
  if (fp16) mp.validate();  // the fp16.* rules of make_loss_scaler (the message names the key)
  return mp;
}

std::string MixedPrecision::describe() const {
  if (!enabled()) return "fp32 throughout";
  std::string s = str_cat("mixed precision: ", dtype_name(dtype),
                          " parameters/gradients/activations, fp32 master weights and optimizer "
                          "state, gradients accumulated and reduced as ",
                          dtype_name(grad_dtype()),
                          grad_dtype() == DType::F32
                              ? ""
                              : " (rounded to it after the sum; MPI has no 16-bit sum, so the "
                                "MPI backend sends them as f32, 4 bytes an element)");
  if (dtype == DType::F16) {
    if (fp16.loss_scale > 0)
      s += str_cat("; static loss scale ", fp16.loss_scale);
    else
      s += str_cat("; dynamic loss scale 2^", fp16.initial_scale_power, ", window ",
                   fp16.loss_scale_window, ", hysteresis ", fp16.hysteresis, ", min ",
                   fp16.min_loss_scale);
  }
  return s;
}

MasterWeights::MasterWeights(std::vector<Tensor> model_side, Device master_device)
    : model_side_(std::move(model_side)), master_device_(master_device) {
  NoGradGuard no_grad;
  for (const Tensor& t : model_side_) {
    Tensor m = Tensor::empty(t.shape(), DType::F32, master_device_);
    copy_(m, t.to(master_device_));  // setup: not counted as a step's traffic
    m.set_requires_grad(true);
    masters_.push_back(m);
  }
}

void MasterWeights::load_grads() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < masters_.size(); ++i) {
    const Tensor g = model_side_[i].grad();
    if (!g.defined()) {
      masters_[i].zero_grad();
      continue;
    }
    if (g.device() != master_device_) {
      // Offload: widen to fp32 where the gradient is, then one D2H copy.
      const Tensor wide = g.dtype() == DType::F32 ? g : to(g, DType::F32);
      Tensor mg = wide.to(master_device_);  // a fresh contiguous copy
      transfers_.d2h += static_cast<int64_t>(mg.nbytes());
      copy_placements(mg, g);  // still the reduced gradient (placements: docs/architecture.md)
      masters_[i].set_grad(mg);
      continue;
    }
    Tensor mg = Tensor::empty(g.shape(), DType::F32, g.device());
    copy_(mg, g);
    copy_placements(mg, g);
    masters_[i].set_grad(mg);
  }
}

void MasterWeights::drop_grads() {
  for (const Tensor& m : masters_) m.zero_grad();
}

void MasterWeights::store_params() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < masters_.size(); ++i) {
    Tensor dst = model_side_[i];
    if (dst.device() != master_device_) {
      // Offload: round on the host into the model's dtype, then one H2D copy.
      Tensor host = masters_[i];
      if (dst.dtype() != DType::F32) {
        host = Tensor::empty(dst.shape(), dst.dtype(), master_device_);
        copy_(host, masters_[i]);
      }
      comm_detail::copy_host_into_device(dst, host);
      transfers_.h2d += static_cast<int64_t>(host.nbytes());
      continue;
    }
    copy_(dst, masters_[i]);
  }
}

size_t MasterWeights::master_bytes() const {
  size_t n = 0;
  for (const Tensor& m : masters_) n += m.nbytes();
  return n;
}

size_t MasterWeights::grad_bytes() const {
  size_t n = 0;
  for (const Tensor& m : masters_)
    if (m.grad().defined()) n += m.grad().nbytes();
  return n;
}

}  // namespace ms
