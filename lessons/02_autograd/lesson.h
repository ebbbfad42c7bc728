// Lesson 02: autograd. You write the backward of one op, LayerNorm, in exercise.cpp:
// three gradients from one saved normalized input; check.cpp grades them with a finite-
// difference gradcheck in f64, names the likely bug when it fails, then runs the op inside a
// small training loss.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

// y = (x - mean) / sqrt(var + eps) * weight + bias, each row of x (N, C) normalized over its C
// values (biased variance, as torch.nn.LayerNorm), differentiable: records ONE Node
// "my_layernorm" with inputs {x, weight, bias}. weight and bias are (C). x, weight and bias share
// a dtype, f32 or f64 (the checker uses f64). The backward's g has y's shape (N, C); it returns
// {dL/dx (N, C), dL/dweight (C), dL/dbias (C)}.
ms::Tensor my_layernorm(const ms::Tensor& x, const ms::Tensor& weight, const ms::Tensor& bias,
                        double eps = 1e-5);
