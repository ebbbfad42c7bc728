#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "optim/grad_check.h"
#include "optim/kernels.h"

namespace ms {

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
  for (const Tensor& p : params_)
    MS_CHECK(p.dtype() == DType::F32 && p.is_contiguous(),
             "optimizer: parameters must be "
             "contiguous f32, got ",
             dtype_name(p.dtype()), " ", shape_str(p.shape()),
             p.dtype() == DType::BF16 || p.dtype() == DType::F16
                 ? " (a 16-bit model trains through fp32 master weights: ZeroOptions::precision, "
                   "parallel/zero/mixed_precision.h)"
                 : "");
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double weight_decay)
    : Optimizer(std::move(params), lr), momentum_(momentum), weight_decay_(weight_decay) {
  // Allocated up front (PyTorch does it lazily) so state_bytes() and the ZeRO
  // memory table see the state from the start.
  for (const Tensor& p : params_)
    momentum_buf_.push_back(momentum_ != 0 ? optim_kernels::zeros_on(p.shape(), DType::F32, p.device())
                                           : Tensor());
}

void SGD::step() {
  NoGradGuard no_grad;
  // Checked before any update, so a refused step changes nothing.
  for (const Tensor& p : params_) refuse_unreduced_grad(p.grad(), "optimizer step");
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    optim_kernels::sgd_update(params_[i], momentum_buf_[i], optim_kernels::contiguous_or_self(g),
                              static_cast<float>(lr_), static_cast<float>(momentum_),
                              static_cast<float>(weight_decay_), !momentum_started_);
  }
  momentum_started_ = true;
}

size_t SGD::state_bytes() const {
  size_t n = 0;
  for (const Tensor& b : momentum_buf_) n += b.defined() ? b.nbytes() : 0;
  return n;
}

AdamW::AdamW(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps,
             double weight_decay)
    : Optimizer(std::move(params), lr),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      weight_decay_(weight_decay) {
  MS_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adamw: betas (", beta1, ", ", beta2,
           ") must be in [0, 1)");
  // State allocated up front (zeros), as ZeRO's memory formula assumes, on
  // the parameter's device (under ZeRO-Offload that is the CPU).
  for (const Tensor& p : params_) {
    m_.push_back(optim_kernels::zeros_on(p.shape(), DType::F32, p.device()));
    v_.push_back(optim_kernels::zeros_on(p.shape(), DType::F32, p.device()));
  }
}

// Follows torch.optim.AdamW's single-tensor path operation for operation, so
// our weights match PyTorch's to float rounding:
//   p *= 1 - lr·wd;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
//   p -= (lr / (1-β1^t)) · m / (√v / √(1-β2^t) + eps)
void AdamW::step() {
  NoGradGuard no_grad;
  ++t_;
  const double bc1 = 1 - std::pow(beta1_, static_cast<double>(t_));
  const double bc2 = 1 - std::pow(beta2_, static_cast<double>(t_));
  const float step_size = static_cast<float>(lr_ / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = static_cast<float>(1 - lr_ * weight_decay_);
  const float b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
  // 1-β computed in double then rounded, as PyTorch passes it (alpha=1-beta1).
  const float one_minus_b1 = static_cast<float>(1 - beta1_);
  const float one_minus_b2 = static_cast<float>(1 - beta2_);
  const float eps = static_cast<float>(eps_);
  std::vector<optim_kernels::AdamWSlot> slots;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    refuse_unreduced_grad(g, "optimizer step");
    slots.push_back({params_[i], m_[i], v_[i], optim_kernels::contiguous_or_self(g)});
  }
  optim_kernels::adamw_update(
      slots, {step_size, decay, b1, b2, one_minus_b1, one_minus_b2, bc2_sqrt, eps});
}

size_t AdamW::state_bytes() const {
  size_t n = 0;
  for (size_t i = 0; i < m_.size(); ++i) n += m_[i].nbytes() + v_[i].nbytes();
  return n;
}

double grad_sq_norm(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    refuse_unreduced_grad(g, "gradient norm");
    total += optim_kernels::sum_squares(optim_kernels::contiguous_or_self(g));
  }
  return total;
}

void scale_grads(const std::vector<Tensor>& params, double factor) {
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) mul_(g, factor);
  }
}

double clip_factor(double total_norm, double max_norm) {
  if (max_norm <= 0 || total_norm <= max_norm) return 1.0;
  return max_norm / (total_norm + 1e-6);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  double norm = std::sqrt(grad_sq_norm(params));
  double f = clip_factor(norm, max_norm);
  if (f != 1.0) scale_grads(params, f);
  return norm;
}

double LRSchedule::at(int64_t step) const {
  if (kind == Kind::Constant) return max_lr;
  if (step < warmup) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  double span = std::max<double>(static_cast<double>(total_steps - warmup), 1.0);
  double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  constexpr double kPi = 3.14159265358979323846;
  return min_lr + 0.5 * (max_lr - min_lr) * (1 + std::cos(kPi * progress));
}

LRSchedule::Kind LRSchedule::parse(const std::string& name) {
  if (name == "constant") return Kind::Constant;
  if (name == "cosine") return Kind::Cosine;
  throw Error(str_cat("--schedule: unknown schedule '", name, "' (valid: constant, cosine)"));
}

}  // namespace ms
