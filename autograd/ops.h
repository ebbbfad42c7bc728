// The differentiable ops. Each op checks its arguments (errors name the op and
// the shapes), finds its device once (all inputs on one device; outputs and
// everything its backward allocates go there), calls its kernels through the
// explicit device switch of tensor/device_kernels.h (CPU and Sim: the cpu::
// kernel; CUDA: the cuda:: twin) and — when grad mode is on and an input
// requires grad — records a Node whose backward is written right beside the
// forward (see ops_*.cpp).
#pragma once
#include <memory>
#include <vector>

#include "tensor/factory.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"

namespace ms {

// ---- views: share storage with the input (ops_view.cpp) ----
Tensor view(const Tensor& t, Shape shape);  // error if the strides can't express it; one -1 allowed
Tensor reshape(const Tensor& t, Shape shape);  // a view when possible, else a contiguous copy
Tensor flatten(const Tensor& t);               // reshape to 1-D
Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& t, const Shape& dims);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& t, int64_t dim, int64_t index);               // drops `dim`
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim);  // like torch.chunk
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor expand(const Tensor& t, const Shape& shape);  // broadcast view with stride 0
Tensor detach(const Tensor& t);                      // same storage, no graph

// ---- copies ----
Tensor contiguous(const Tensor& t);  // t itself if already contiguous
Tensor clone(const Tensor& t);
Tensor to(const Tensor& t, DType dtype);  // differentiable between f32 and f64
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);

// ---- elementwise, numpy broadcasting (ops_elementwise.cpp) ----
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator+(const Tensor& a, double s) {
  return add(a, s);
}
inline Tensor operator-(const Tensor& a, double s) {
  return add(a, -s);
}
inline Tensor operator*(const Tensor& a, double s) {
  return mul(a, s);
}
inline Tensor operator/(const Tensor& a, double s) {
  return mul(a, 1.0 / s);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}
inline Tensor operator+(double s, const Tensor& a) {
  return add(a, s);
}
inline Tensor operator-(double s, const Tensor& a) {
  return add(neg(a), s);
}
inline Tensor operator*(double s, const Tensor& a) {
  return mul(a, s);
}

// Sums `t` down to `shape` (the inverse of broadcasting): backward of every broadcasting op.
Tensor sum_to(const Tensor& t, const Shape& shape);

// ---- reductions (ops_reduce.cpp) ----
Tensor sum(const Tensor& t);  // all elements -> shape []
Tensor sum(const Tensor& t, const Shape& dims, bool keepdim = false);
Tensor mean(const Tensor& t);
Tensor mean(const Tensor& t, const Shape& dims, bool keepdim = false);
Tensor max(const Tensor& t);  // gradient flows to the first maximal element
Tensor max(const Tensor& t, int64_t dim, bool keepdim = false);

// ---- matmul (ops_matmul.cpp) ----
// (M, K) @ (K, N) -> (M, N); (..., M, K) @ (..., K, N) with equal batch dims;
// (..., M, K) @ (K, N) treats the batch as extra rows.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) · weight (in, out) + bias (out): GPT-2's Conv1D layout, fused.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- fused kernels with hand-written backward (ops_nn.cpp) ----
Tensor softmax(const Tensor& t, int64_t dim = -1);
Tensor log_softmax(const Tensor& t, int64_t dim = -1);
// Over the last dim: (x - mean) / sqrt(var + eps) * weight + bias.
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// GELU, tanh approximation (Hendrycks & Gimpel), as GPT-2 uses.
Tensor gelu(const Tensor& x);
// weight (V, C) gathered at i32 `indices` of any shape -> (indices..., C); backward scatter-adds.
Tensor embedding(const Tensor& weight, const Tensor& indices);
// Mean over N of -log softmax(logits)[target]; logits (N, V), targets i32 (N).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets);

// A dropout keep-mask: one byte per element (1 = kept), as PyTorch's fused
// dropout keeps a bool mask (not a float one): backward needs only the mask
// and 1/(1-p). The bytes live in a Storage, so the allocator's counter sees
// them (parallel/tp/activation_memory.h counts them at 1 byte). Masks are
// drawn on the host from the run's Generator (so a device run drops the same
// elements as a CPU run, and checkpointing replays them) and copied to the
// activation's device once, where the kernels read them.
struct DropoutMask {
  std::shared_ptr<Storage> bytes;
  Shape shape;
  double p = 0;
  int64_t numel() const { return shape_numel(shape); }
  Device device() const { return bytes->device(); }
  // The bytes for host code: an ms::Error unless the mask is on the CPU.
  uint8_t* host_data(std::source_location caller = std::source_location::current()) const;
  // The bytes for a device kernel: on Sim, only inside a KernelScope.
  const uint8_t* device_data(std::source_location caller = std::source_location::current()) const;
  const uint8_t* data() const { return host_data(); }  // host code's name for host_data()
};
// One uniform per element from `gen`, in row-major order; dropped when < p. On the CPU.
DropoutMask draw_dropout_mask(const Shape& shape, double p, Generator& gen);
// Positions [start, start + n) of dim 1 of a CPU mask of shape (B, T, ...).
DropoutMask slice_dropout_mask(const DropoutMask& m, int64_t start, int64_t n);
// The mask on `device` (itself when already there; else one transfer, as Tensor::to).
DropoutMask dropout_mask_to(const DropoutMask& m, Device device);
// x ∘ keep / (1-p); backward multiplies the gradient the same way (keeps only the mask).
Tensor apply_dropout_mask(const Tensor& x, const DropoutMask& mask);

// Causal multi-head self-attention over GPT-2's packed projection, fused:
// qkv (B, T, 3C) -> (B, T, C), softmax(q·kᵀ/√hs) with the causal mask, then ·v.
Tensor causal_attention(const Tensor& qkv, int64_t n_head);
// The same with dropout on the attention probabilities (GPT-2's attn_pdrop:
// softmax, dropout, then ·v, as Hugging Face's GPT2Attention): the mask
// (B, n_head, T, T) is drawn from `gen` (draw_dropout_mask); p == 0 draws
// nothing and is causal_attention(qkv, n_head).
Tensor causal_attention(const Tensor& qkv, int64_t n_head, double attn_p, Generator& gen);
// With a given mask (B, n_head, T, T), for gradient checks with a fixed mask.
Tensor causal_attention(const Tensor& qkv, int64_t n_head, const DropoutMask& attn_mask);
// Inverted dropout: zeroes each element with probability p, scales the rest by
// 1/(1-p). Identity (and no randomness drawn) when p == 0.
Tensor dropout(const Tensor& x, double p, Generator& gen);

// ---- in place, never recorded (optimizers, gradient accumulation) ----
void fill_(Tensor& t, double value);
void copy_(Tensor& dst, const Tensor& src);                     // shapes equal; dtypes may differ
void add_(Tensor& dst, const Tensor& src, double alpha = 1.0);  // dst += alpha * src
void mul_(Tensor& t, double s);

// The error of a code path with no device kernel yet (an ms::Error naming it).
[[noreturn]] inline void cuda_kernels_planned(const char* op) {
  throw Error(str_cat(op, ": tensors off the CPU are not supported here yet"));
}

// Elementwise |a - b| <= atol + rtol * |b| (and equal shapes).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace ms
