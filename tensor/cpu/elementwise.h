// Elementwise CPU kernels over strided tensors (f32 and f64). Inputs arrive
// already broadcast to the output's shape (expanded dims have stride 0); the
// output is contiguous. Contiguous inputs take a flat, vectorizable loop.
// Unlike the other families these take Tensors, since arbitrary strides are
// the point; a CUDA twin is planned.
#pragma once
#include "tensor/tensor.h"

namespace ms::cpu {

enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Neg, Exp, Log, Tanh, Sqrt, Relu, AddScalar, MulScalar, PowScalar };

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void unary(UnaryOp op, const Tensor& a, Tensor& out, double scalar = 0);
// dst[i] = src[i] for any strides and any dtype pair (converting, with
// round-to-nearest-even into bf16/f16). Shapes must match.
void copy(const Tensor& src, Tensor& dst);
void fill(Tensor& t, double value);
// dst += alpha * src, dst contiguous (gradient accumulation, optimizer updates).
// When either is bf16/f16 the dtypes may differ: the sum is formed in f32 and
// rounded once into dst.
void axpy(Tensor& dst, const Tensor& src, double alpha);
// t *= s for a contiguous bf16/f16 tensor: in f32, rounded back once.
void scale_rounded(Tensor& t, double s);

}  // namespace ms::cpu
