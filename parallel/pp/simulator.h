// Runs a Schedule's instruction lists with unit costs (forward 1, backward 2
// per model chunk, communication 0), in one process, and checks that the
// lists are a correct training step:
//  - every micro-batch is forwarded and backwarded exactly once on every stage
//    (and chunk), each with its input there (loaded, received, or handed over
//    by the previous chunk on the same rank), a send only of what exists;
//  - every receive meets its send (same micro-batch, chunk and kind);
//  - no deadlock with rendezvous sends (MPI_Ssend-like: done only when the
//    receiver has posted the receive), the strictest reading of MPI's
//    blocking send, so a schedule that passes here cannot hang on any MPI
//    whatever it buffers;
//  - a 1F1B or interleaved schedule never holds more activations than its
//    formula (peak_formula) allows.
// The times (makespan, bubble, timeline) are those of a second run with
// buffered sends: a send is posted and its stage moves on, as Megatron's
// batched isend/irecv do (p2p_communication.py), so they are the data
// dependencies' times. The rendezvous run's are kept beside them: equal for
// GPipe and 1F1B (build_schedule places each message where neither side is
// computing), larger for interleaved, whose warm-up leaves some messages no
// such moment (docs/architecture.md, pipeline section).
// Any failure is an ms::Error naming the stage and the instruction (for a
// deadlock, each stage's blocked instruction and what its peer is doing).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/pp/schedule.h"

namespace ms::pp {

// An exact fraction, always reduced, den > 0.
struct Rational {
  int64_t num = 0, den = 1;
  static Rational of(int64_t num, int64_t den);
  bool operator==(const Rational&) const = default;
  std::string str() const;  // "3/8", "0"
  double value() const { return static_cast<double>(num) / static_cast<double>(den); }
};

struct Span {
  int index;  // position in the stage's list
  Instr instr;
  int64_t start;  // when the stage reached it (a receive may wait from here)
  int64_t end;    // when it completed
};

struct SimResult {
  int64_t makespan = 0;  // time at which the last stage finishes
  int64_t ideal = 0;     // one stage's compute with no bubble: m·v·(1 + 2)
  Rational bubble;       // (makespan − ideal) / ideal
  // Per stage, the most forwards not yet backwarded at any moment, counted in
  // model chunks (a chunk holds 1/v of the stage's layers; with v = 1 these
  // are whole micro-batches' activations).
  std::vector<int> peak_in_flight;
  std::vector<std::vector<Span>> timeline;  // [stage] -> one span per instruction
  // The same lists with rendezvous sends: a sender whose receiver is busy waits.
  int64_t rendezvous_makespan = 0;
  Rational rendezvous_bubble;
};

// check_memory_bound = false skips the last check (to measure a schedule
// that is not the kind it claims, e.g. a warm-up longer than its kind's).
SimResult simulate(const Schedule& s, bool check_memory_bound = true);

// The formulas of Narayanan et al. 2021 (§2.2): bubble (p − 1)/m for GPipe
// and 1F1B, (p − 1)/(v·m) interleaved.
Rational bubble_formula(ScheduleKind kind, int p, int m, int v);
// Peak activations in flight on stage r, in chunks: GPipe m; 1F1B
// min(p − r, m); interleaved min(w_r + 1, m·v), w_r the warm-up
// (interleaved_warmup): in steady state a rank holds its warm-up forwards
// plus the one it just ran. With enough micro-batches that is
// (v + 1)·p − 1 − 2r chunks. A chunk holds L/(p·v) of the L layers, so rank
// 0 holds ((v + 1)·p − 1)/(p·v) = 1 + (p − 1)/(p·v) times the L layers'
// worth that 1F1B's p micro-batches of L/p layers hold (Korthikanti et al.
// 2022, §4.2.3; activation_factor_vs_1f1b).
int peak_formula(ScheduleKind kind, int p, int m, int v, int r);
// Stage r's measured peak over 1F1B's on the same stage with the same layers:
// peak chunks · (1/v of a stage's layers) / min(p − r, m) micro-batches.
// Interleaved, stage 0, m large enough: 1 + (p − 1)/(p·v).
Rational activation_factor_vs_1f1b(const SimResult& r, int p, int m, int v, int stage);
// The same as text, e.g. "min(p − r, m) = min(4 − 1, 8) = 3".
std::string peak_formula_text(ScheduleKind kind, int p, int m, int v, int r);

}  // namespace ms::pp
