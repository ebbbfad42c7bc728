// 16-bit (bf16, f16) inputs to the ops: storage types, computed in f32.
//
// A GPU kernel over bf16/f16 tensors loads 16-bit values, accumulates in f32
// and rounds its output to 16-bit once (Megatron, DeepSpeed and llm.c all
// train this way). Every op in autograd/ops.h does the same when an input is
// 16-bit: it is run as
//     down(op(up(inputs...)), storage)
// with up/down the differentiable cast to(). Autograd then rounds each
// gradient back to 16-bit where it reaches a 16-bit tensor (to()'s backward
// casts to the input's dtype), so a 16-bit parameter gets a 16-bit gradient,
// as in PyTorch's `model.to(torch.bfloat16)`.
//
// Which tensors are 16-bit and which stay f32 (the precision map):
//   16-bit: parameters, their gradients, every op's output (the activations
//           passed between ops: residual stream, LayerNorm/GEMM/GELU/attention
//           outputs, logits), the gradients flowing between ops;
//   f32:    everything inside an op (GEMM accumulation, LayerNorm's mean and
//           rstd, the attention scores and softmax, GELU's tanh), the loss and
//           the cross-entropy/softmax over the vocabulary (cross_entropy
//           returns an f32 loss, like Megatron's fp32 cross entropy), and the
//           dropout mask's 1/(1-p) scale.
// What backward keeps is 16-bit too, for the ops that hold most of a block's
// activations: linear keeps its 16-bit input and casts it up inside backward
// (ops_matmul.cpp, linear_16bit); LayerNorm, GELU and attention keep only
// their 16-bit input and recompute their f32 internals in backward
// (recompute_in_f32 below). A bf16 GPT's graph is about half an f32 one's
// (tests/test_mixed.cpp). The smaller ops (elementwise, softmax, embedding,
// cross entropy) keep whatever f32 casts their backward needs.
// A tensor that mixes a 16-bit and an f32 input computes in f32 and returns
// f32 (PyTorch's type promotion); bf16 with f16 is an error.
// With only f32/f64 inputs none of this runs: the f32 path is the original one.
#pragma once
#include <functional>
#include <initializer_list>
#include <optional>
#include <vector>

#include "tensor/tensor.h"

namespace ms::mixed {

inline bool is_half(DType d) {
  return d == DType::BF16 || d == DType::F16;
}

// The dtype an op's result takes when one of its floating inputs is 16-bit;
// nullopt when none is (the caller then runs its f32/f64 path untouched).
std::optional<DType> result_dtype(std::initializer_list<const Tensor*> inputs, const char* op);

// to(t, f32) for a 16-bit tensor, else t itself (undefined stays undefined).
Tensor up(const Tensor& t);
// to(y, dtype): the op's f32 output rounded to the storage dtype.
Tensor down(const Tensor& y, DType dtype);

// down(f(up(inputs)), out) with the same values forward and backward, but the
// node keeps only the inputs as given (16-bit storage) and, in backward, casts
// them up, recomputes f in f32 with the graph on (the same values, so the
// same intermediates) and backpropagates through it; each input's gradient is
// rounded to its own dtype. The op's f32 intermediates (LayerNorm's
// statistics, attention's probabilities) then live only inside backward, as
// FlashAttention recomputes its scores instead of storing them. For the fused
// ops whose f32 saved tensors would dominate a 16-bit graph.
Tensor recompute_in_f32(const char* op, const std::vector<Tensor>& inputs, DType out,
                        const std::function<Tensor(const std::vector<Tensor>&)>& f);

}  // namespace ms::mixed
