// Lesson 11: mixed precision and loss scaling. You write DeepSpeed's dynamic
// loss scaler (its update rule) and the fp16 optimizer step that uses it, in
// exercise.cpp; check.cpp runs the scaler against the library's
// DynamicLossScaler on scripted sequences of overflows, the step on crafted
// gradients, then both inside a real fp16 training run.
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/ops.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"

// The "fp16" section of a ds_config.json, DeepSpeed's names and defaults
// (consecutive_hysteresis is false and raise_error_at_min_scale true throughout).
struct Fp16Config {
  int initial_scale_power = 16;      // the scale starts at 2^initial_scale_power
  int64_t loss_scale_window = 1000;  // clean steps between doublings
  int hysteresis = 2;                // overflows tolerated before a halving
  double min_loss_scale = 1;         // the scale never goes below this
};

// DeepSpeed's DynamicLossScaler state, with its names
// (deepspeed/runtime/fp16/loss_scaler.py).
struct MyScaler {
  Fp16Config config;
  double cur_scale = 1;             // multiply the loss by this before backward
  int cur_hysteresis = 1;           // overflows left before the next halving
  int64_t cur_iter = 0;             // update_scale() calls so far
  int64_t last_overflow_iter = -1;  // cur_iter of the last overflow; -1: none yet
};

// The scaler before its first step: cur_scale = 2^initial_scale_power, the
// whole hysteresis, no iteration and no overflow yet.
MyScaler make_scaler(const Fp16Config& config);

// Records one optimizer step whose gradients did (overflow = true) or did not
// overflow, and returns whether that step must be skipped (= overflow).
//   overflow: if the hysteresis is used up (cur_hysteresis == 1), halve the
//     scale, never below min_loss_scale; if the scale is ALREADY at
//     min_loss_scale, throw ms::Error with DeepSpeed's message "Current loss
//     scale already at minimum - cannot decrease scale anymore. Exiting run."
//     Otherwise spend one unit of hysteresis (the scale stays). Either way,
//     remember this iteration as the last overflow.
//   clean: double the scale on the loss_scale_window-th clean step in a row,
//     counted since the last overflow (the start counts as an overflow at
//     iteration -1): DeepSpeed doubles when cur_iter - last_overflow_iter
//     (this step included) is a multiple of the window. Doubling refills the
//     hysteresis.
//   Every call counts one iteration.
bool update_scale(MyScaler& s, bool overflow);

// One optimizer step of fp16 mixed precision, in DeepSpeed's order
// (FP16_Optimizer / ZeRO's step, then the engine's LR schedule):
//   grads16   the fp16 gradients backward left, of (loss · s.cur_scale):
//             one per parameter, DType::F16
//   opt       the optimizer, built over the fp32 MASTER weights (opt.params(),
//             DType::F32, same shapes as grads16); it reads each master's .grad
//   params16  the fp16 weights the forward computes with; after an update
//             each must equal its master rounded to fp16
//   sched     the LR schedule; lr_step is its position: the update uses
//             sched.at(lr_step), and lr_step counts updates taken
// Overflow: any inf/NaN in grads16 (ms::has_overflow). A step that must be
// skipped changes nothing but the scaler: no parameter, no optimizer state,
// no LR step. Otherwise the masters get the true (unscaled) f32 gradients
// and one optimizer step at this step's LR. "Unscaled" means divided by the
// scale this step's backward used, even when update_scale just doubled it
// (PyTorch GradScaler's order, and minispeed's; DeepSpeed's ZeRO step divides
// by the new scale: README question 2). Returns whether it was skipped.
bool fp16_step(MyScaler& s, const std::vector<ms::Tensor>& grads16, ms::Optimizer& opt,
               std::vector<ms::Tensor>& params16, const ms::LRSchedule& sched, int64_t& lr_step);
