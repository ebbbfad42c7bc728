// Lesson 07: ZeRO. You write the stage-1 shard update in exercise.cpp;
// check.cpp runs it on 4 ranks against one process training on the whole batch.
#pragma once
#include "autograd/ops.h"
#include "parallel/comm/communicator.h"

// One ZeRO stage-1 optimizer step, SGD with momentum (torch.optim.SGD), on a
// flat parameter buffer. D = comm.size(), S = flat_params.numel() / D.
//   flat_params  every parameter back to back, padded with zeros to a multiple
//                of D (the model's parameters are views into it); equal on all ranks
//   flat_grads   this rank's LOCAL gradient (from its own batch), same layout
//   momentum     this rank's optimizer state for ITS slice only: S elements
// All three are f32, 1-D and contiguous; flat_params.numel() is a multiple of D
// (the checker passes Ψ = 30,570 padded to 30,572 for D = 4).
// Rank r owns slice r, elements [r·S, (r+1)·S). Afterwards every rank's
// flat_params holds the updated parameters:
//   g   = slice r of the gradients, AVERAGED over the ranks
//   buf = mu·buf + g;   p = p - lr·buf          (slice r only: that is all our state covers)
//   every rank receives every rank's updated slice
void zero1_step(ms::Communicator& comm, ms::Tensor& flat_params, const ms::Tensor& flat_grads,
                ms::Tensor& momentum, double lr, double mu);
