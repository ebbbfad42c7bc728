// Lesson 02: autograd. You write the backward of one op, sigmoid, in exercise.cpp;
// check.cpp grades it with gradcheck and inside a small training graph.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

// s = 1 / (1 + exp(-x)), elementwise, differentiable: records one Node "my_sigmoid".
ms::Tensor my_sigmoid(const ms::Tensor& x);
