// Pipeline schedules as data: for each pipeline stage (rank), the ordered list
// of instructions it executes in one training step. No MPI here; a runtime
// executes the lists (one interpreter loop per rank, as DeepSpeed's
// PipelineEngine._exec_schedule does) and parallel/pp/simulator.h runs them
// with unit costs to check them and measure the bubble and the memory.
//
// The vocabulary is DeepSpeed's deepspeed/runtime/pipe/schedule.py
// (LoadMicroBatch, ForwardPass, BackwardPass, SendActivation, RecvActivation,
// SendGrad, RecvGrad, ReduceTiedGrads, ReduceGrads, OptimizerStep), each
// carrying the micro-batch id (not a buffer slot) and, for the interleaved
// schedule, the model chunk.
//
// Three schedules, built in two layers:
//  1. a compute order per stage (which forward/backward comes next):
//     GPipe's all-forward-all-backward (Huang et al. 2019), 1F1B or
//     PipeDream-Flush (Narayanan et al. 2021, §2.2; Megatron's
//     forward_backward_pipelining_without_interleaving) and interleaved 1F1B
//     with v model chunks per rank (Narayanan et al. 2021, §2.2.2; Megatron's
//     forward_backward_pipelining_with_interleaving);
//  2. build_schedule() adds the loads and the point-to-point messages in an
//     order that cannot deadlock with blocking send/recv (comm_order.cpp).
#pragma once
#include <string>
#include <vector>

namespace ms::pp {

enum class Op {
  kLoadMicroBatch,  // first stage: inputs; last stage: labels
  kForwardPass,
  kBackwardPass,
  kSendActivation,   // to the next (virtual) stage
  kRecvActivation,   // from the previous (virtual) stage
  kSendGrad,         // d loss / d input, to the previous stage
  kRecvGrad,         // d loss / d output, from the next stage
  kReduceTiedGrads,  // sum the tied embedding's gradient over the first and last stage
  kReduceGrads,      // data-parallel gradient reduction (ZeRO-0/1)
  kOptimizerStep,
};

// Unit costs (Narayanan et al. 2021 take t_b ≈ 2·t_f); communication costs 0.
constexpr int kForwardCost = 1;
constexpr int kBackwardCost = 2;

struct Instr {
  Op op;
  int micro_batch = -1;  // -1 for the step-level ops (reduce, optimizer step)
  int chunk = 0;         // model chunk on this rank (interleaved); 0 otherwise
  bool operator==(const Instr&) const = default;
};

// DeepSpeed's class name, e.g. "SendActivation".
const char* op_name(Op op);
bool is_compute(Op op);
bool is_send(Op op);
bool is_recv(Op op);
// "ForwardPass(mb 3)", "RecvGrad(mb 1, chunk 0)" (chunk shown when v > 1).
std::string describe(const Instr& in, int virtual_stages);
// Compact form for tables: "F3", "B3", "sA3", "rA3", "sG3", "rG3", "L3",
// "RT", "RG", "OS"; a chunk suffix ".1" when v > 1 (not on loads).
std::string short_name(const Instr& in, int virtual_stages);

enum class ScheduleKind { kGPipe, kOneFOneB, kInterleaved };
const char* schedule_name(ScheduleKind kind);  // "gpipe", "1f1b", "interleaved"
// Throws ms::Error naming the value and the valid names.
ScheduleKind parse_schedule_kind(const std::string& name);

struct Schedule {
  ScheduleKind kind;
  int stages = 1;                         // p: pipeline ranks
  int micro_batches = 1;                  // m
  int virtual_stages = 1;                 // v: model chunks per rank (interleaved only)
  std::vector<std::vector<Instr>> steps;  // [stage] -> instructions in order
};

// One forward or backward of one micro-batch on one model chunk.
struct Work {
  bool backward;
  int micro_batch;
  int chunk = 0;
  bool operator==(const Work&) const = default;
};
using ComputeOrder = std::vector<std::vector<Work>>;  // [stage] -> order

// 1F1B's warm-up forwards on stage r: min(p − r − 1, m) (Megatron's
// num_warmup_microbatches). Stage r then holds at most min(p − r, m)
// micro-batches' activations.
int one_f_one_b_warmup(int p, int m, int r);
// Interleaved warm-up on rank r, in chunk-forwards, Megatron's
// get_pp_rank_microbatches: min((p − r − 1)·2 + (v − 1)·p, m·v)
// (p = 4, v = 2: 10, 8, 6, 4); 1F1B's when v = 1 (Megatron then runs its
// non-interleaved schedule).
int interleaved_warmup(int p, int m, int v, int r);

ComputeOrder gpipe_order(int p, int m);
ComputeOrder one_f_one_b_order(int p, int m);
// Throws ms::Error unless m is a multiple of p (Megatron's requirement: the
// micro-batches go through the chunks in groups of p).
ComputeOrder interleaved_order(int p, int m, int v);

// Where the messages go between the computes, and in which order.
enum class CommPlacement {
  // Every pair of neighbours meets its messages in one global order
  // (comm_order.cpp): deadlock-free with blocking send/recv.
  kPaired,
  // A send right after the compute that produced it, a receive right before
  // the compute that needs it: the ordering one writes first, and (with 1F1B)
  // the head-to-head send/send deadlock of NVIDIA/nccl#479. For tests, and to
  // show what goes wrong.
  kNaive,
};

// Adds LoadMicroBatch, the send/recv pairs and the final ReduceTiedGrads,
// ReduceGrads, OptimizerStep (DeepSpeed's last step: tied grads before data
// parallel grads) to each stage's compute order. Throws ms::Error if the
// order cannot run even with unbounded buffering (a backward before its
// forward, a circular wait), naming the stage and the work.
Schedule build_schedule(ScheduleKind kind, int p, int m, int v, const ComputeOrder& order,
                        CommPlacement placement = CommPlacement::kPaired);

// Validates p ≥ 1, m ≥ 1, v ≥ 1 (v > 1 only for interleaved) with errors
// naming the flag-like names --pp, --micro-batches, --virtual-stages.
Schedule make_schedule(ScheduleKind kind, int p, int m, int v = 1);

// Where a stage's activation goes and where its gradient comes from. Virtual
// stage s = chunk·p + rank (Megatron's layout: chunk c of rank r holds layers
// of virtual stage c·p + r), so rank p − 1 feeds rank 0's next chunk.
struct Peer {
  int rank, chunk;
};
bool is_first_virtual(const Schedule& s, int rank, int chunk);
bool is_last_virtual(const Schedule& s, int rank, int chunk);
Peer next_virtual(int p, int rank, int chunk);
Peer prev_virtual(int p, int rank, int chunk);

}  // namespace ms::pp
