// Lesson 09: pipeline parallelism. You write the 1F1B (PipeDream-Flush)
// schedule as data — for each pipeline stage, the order in which it runs the
// forward and backward passes of the m micro-batches — in exercise.cpp;
// check.cpp hands it to the library, which adds the sends and receives
// (parallel/pp/schedule.h, build_schedule) and runs it in the simulator
// (parallel/pp/simulator.h), and compares what the simulator measured with
// the formulas.
#pragma once
#include "parallel/pp/schedule.h"

// p pipeline stages (stage r holds the r-th of p consecutive slices of the
// model's layers), m micro-batches per training step, p ≥ 1, m ≥ 1.
//
// Returns one list per stage (size p); list r is stage r's compute order: each
// entry an ms::pp::Work{backward, micro_batch} (leave chunk = 0: one model
// chunk per stage), micro_batch in [0, m). Every stage runs the forward and
// the backward of every micro-batch exactly once, a micro-batch's backward
// after its forward.
//
// The 1F1B schedule (Narayanan et al. 2021, §2.2; Megatron's
// forward_backward_pipelining_without_interleaving), on stage r:
//   warm-up:    w = min(p − r − 1, m) forwards, micro-batches 0, 1, ..., w − 1;
//   steady:     for each remaining micro-batch: its forward, then the backward
//               of the OLDEST micro-batch still waiting for one;
//   cool-down:  the backwards still owed, oldest first.
// So stage r holds at most min(p − r, m) micro-batches' activations, and the
// step takes (p − 1)/m longer than its bubble-free time.
//
// Messages are not your job: an activation goes to stage r + 1 after each
// forward, a gradient to stage r − 1 after each backward; build_schedule puts
// the SendActivation/RecvActivation/SendGrad/RecvGrad instructions where a
// blocking send cannot deadlock. A compute order whose stages wait on each
// other in a circle deadlocks whatever the messages do.
ms::pp::ComputeOrder my_one_f_one_b_order(int p, int m);
