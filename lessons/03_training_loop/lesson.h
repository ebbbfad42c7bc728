// Lesson 03: modules and the training loop. You write one training step in exercise.cpp;
// check.cpp runs it in a loop on a synthetic regression and grades every step.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/layers.h"
#include "optim/optimizer.h"

// x is f32 (B, 10), y is f32 (B, 1) — row ranges (narrow views) of a larger
// dataset, B = 64 in the main loop; model is Linear(10, 1): weight (10, 1),
// bias (1); opt is plain SGD that records what .grad held when step() ran.
//
// One step of training `model` on the batch (x, y) with the mean squared error
//   loss = mean((model.forward(x) - y)^2)     (the mean over all B elements of (B, 1))
// and the optimizer `opt` (built over model.parameters()). A correct step leaves the
// parameters updated once, from this batch's gradient alone. Returns the loss value
// computed *before* the update.
double train_step(ms::Linear& model, ms::Optimizer& opt, const ms::Tensor& x, const ms::Tensor& y);
