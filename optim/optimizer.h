// Optimizers over a list of parameter tensors. State (momentum, Adam's m and
// v) lives in explicit tensors, one per parameter, so ZeRO can hand an
// optimizer just its shard of a flat buffer and the state shrinks with it.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace ms {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  // Updates every parameter that has a gradient (under no-grad).
  virtual void step() = 0;
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const std::vector<Tensor>& params() const { return params_; }
  // Bytes of optimizer state held (for the ZeRO memory table).
  virtual size_t state_bytes() const = 0;
  virtual std::string name() const = 0;
  // For checkpoints (parallel/engine/checkpoint.h): the state tensors under
  // torch's state_dict names, each list indexed like params(), and the step
  // count the update depends on (AdamW's bias correction t; SGD: 1 once its
  // momentum buffers hold a value, since torch's first step sets buf = g).
  virtual std::vector<std::pair<std::string, std::vector<Tensor>>> state_tensors() { return {}; }
  virtual int64_t state_steps() const { return 0; }
  virtual void set_state_steps(int64_t) {}

 protected:
  std::vector<Tensor> params_;
  double lr_;
};

// torch.optim.SGD semantics: g += wd·p; buf = momentum·buf + g (buf = g on
// the first step); p -= lr·buf.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0, double weight_decay = 0);
  void step() override;
  size_t state_bytes() const override;
  std::string name() const override { return "sgd"; }
  std::vector<std::pair<std::string, std::vector<Tensor>>> state_tensors() override {
    if (momentum_ == 0) return {};
    return {{"momentum_buffer", momentum_buf_}};
  }
  int64_t state_steps() const override { return momentum_started_ ? 1 : 0; }
  void set_state_steps(int64_t n) override { momentum_started_ = n > 0; }

 private:
  double momentum_, weight_decay_;
  bool momentum_started_ = false;  // torch sets buf = g on the first step
  std::vector<Tensor> momentum_buf_;
};

// AdamW (Loshchilov & Hutter 2019): decoupled weight decay p *= 1 - lr·wd,
// then Adam with bias correction; defaults equal torch.optim.AdamW's.
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 1e-2);
  void step() override;
  size_t state_bytes() const override;
  std::string name() const override { return "adamw"; }
  int64_t steps_taken() const { return t_; }
  std::vector<std::pair<std::string, std::vector<Tensor>>> state_tensors() override {
    return {{"exp_avg", m_}, {"exp_avg_sq", v_}};
  }
  int64_t state_steps() const override { return t_; }
  void set_state_steps(int64_t n) override { t_ = n; }

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  int64_t t_ = 0;
  std::vector<Tensor> m_, v_;  // first and second moments, shaped like params
};

// Sum of squares of all gradients (f64 accumulation); ZeRO all-reduces the
// per-shard sums before taking the root.
double grad_sq_norm(const std::vector<Tensor>& params);
void scale_grads(const std::vector<Tensor>& params, double factor);
// torch.nn.utils.clip_grad_norm_: scale by max_norm/(norm + 1e-6) when the
// norm exceeds max_norm. Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
// The factor clip_grad_norm applies for a given total norm (1 when not clipping).
double clip_factor(double total_norm, double max_norm);

// Learning-rate schedule: constant, or linear warmup then cosine decay to
// min_lr at total_steps (as in nanoGPT/llm.c).
struct LRSchedule {
  enum class Kind { Constant, Cosine } kind = Kind::Constant;
  double max_lr = 1e-3, min_lr = 0;
  int64_t warmup = 0, total_steps = 1;
  double at(int64_t step) const;
  static Kind parse(const std::string& name);  // "constant" | "cosine"
};

}  // namespace ms
