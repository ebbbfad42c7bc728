// The building blocks of GPT-2, each a thin Module over one fused op.
#pragma once
#include "nn/module.h"
#include "tensor/random.h"

namespace ms {

// y = x·W + b with W stored (in, out): GPT-2's Conv1D layout, so Hugging Face
// weights load without a transpose.
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Generator& gen, double init_std = 0.02);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  Tensor weight;  // (in, out)
  Tensor bias;    // (out) or undefined
};

class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, Generator& gen, double init_std = 0.02);
  Tensor forward(const Tensor& indices) const { return embedding(weight, indices); }
  Tensor weight;  // (num, dim)
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) const { return layernorm(x, weight, bias, eps_); }
  Tensor weight, bias;  // (dim)

 private:
  double eps_;
};

class Dropout : public Module {
 public:
  Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {}
  Tensor forward(const Tensor& x) { return training() ? dropout(x, p_, gen_) : x; }
  // For a parallel layout that draws this module's mask its own way from the
  // same stream (parallel/tp/random.h, sequence_parallel_dropout).
  double p() const { return p_; }
  Generator& generator() { return gen_; }

 private:
  double p_;
  Generator gen_;
};

}  // namespace ms
