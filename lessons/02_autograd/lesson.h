// Lesson 02: autograd. You write the backward of one op, sigmoid, in exercise.cpp;
// check.cpp grades it with gradcheck and inside a small training graph.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

// s = 1 / (1 + exp(-x)), elementwise, differentiable: records one Node "my_sigmoid".
// x may have any shape and be f32 or f64 (the checker passes 1-D f32 and f64
// vectors, and a (3, 4) f64 tensor to gradcheck); the backward's g has s's shape and dtype, and
// the gradient it returns must too.
ms::Tensor my_sigmoid(const ms::Tensor& x);
