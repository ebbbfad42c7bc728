// The communication ledger: what each rank sent and received, per op kind.
// DeepSpeed's comms logger (deepspeed.comm, `comms_logger`) is the closest
// peer; ours is always on, and its point is that measured traffic can be set
// beside the formula of the parallelism in use and checked for equality
// (docs/architecture.md, "Communication ledger").
//
// What is counted, per Communicator (copies of a Communicator share one
// ledger; split() starts a fresh one, so the dp, tp and pp groups of a mesh
// keep their traffic apart):
//   calls     one per op issued (blocking or `i...`), counted when it starts;
//             a 1-rank communicator issues no collective and counts none;
//   payload   the bytes of the tensors handed over: the tensor for all_reduce,
//             broadcast, send, recv; the INPUT of reduce_scatter and the
//             OUTPUT of all_gather (the big side, as nccl-tests' "size");
//   sent,     bytes this rank put on / took off the wire. Two kinds, never mixed
//   received  in one row (comm_op_measured says which a row holds):
//     measured: send, recv, and the hand-written ring collectives of ring.h,
//       which are made of sends and receives: every message, counted exactly;
//     modelled: the collectives MPI runs with its own algorithms
//       (all_reduce, reduce_scatter, all_gather, broadcast). We cannot see
//       MPI's wire, so we count what a bandwidth-optimal ring would move for
//       that call on that communicator — a model, not a measurement of MPI:
//       Open MPI picks recursive doubling, trees or rings by size, and those
//       move other amounts per rank. For all_reduce, reduce_scatter and
//       all_gather the model is exactly what ring.cpp moves for the same call
//       (tests/mpi/test_ledger.cpp checks it, rank by rank), i.e.
//         all_reduce      2(D-1)/D · n      (reduce-scatter + all-gather)
//         reduce_scatter  (D-1)/D · n_in
//         all_gather      (D-1)/D · n_out
//         broadcast       a pipelined chain from the root (NCCL's ring
//                         broadcast): every rank but the root receives n,
//                         every rank but the last in the chain sends n;
//         barrier         0 bytes;
//         all_to_all      every block but the rank's own: (D-1)/D · n each
//                         way for equal blocks (all_to_all_bytes); the
//                         pairwise exchange of ring.h moves exactly that,
//                         and so does any direct algorithm (Open MPI's
//                         Bruck variant for tiny messages moves more).
//       When D does not divide n the ring's blocks differ by one element, so
//       ranks differ by a few elements; the sum over ranks is always exact:
//       2(D-1)·n for all_reduce. Reductions count the dtype the transport
//       reduces in (f32 for bf16/f16, as comm_detail::reduce_dtype says);
//       ring_all_reduce gathers 16-bit results in 16 bits, so for bf16/f16 its
//       measured all-gather half is half the model's.
// Counters are plain integers, not atomics: only the main thread talks to MPI
// (MPI_THREAD_FUNNELED, runtime.h).
//
// Reading it (a lesson checker, a test, `minispeed train`):
//   Traffic before = comm.traffic();
//   my_ring_all_reduce(comm, t);
//   Traffic d = comm.traffic() - before;
//   d[CommOp::Send].sent, d[CommOp::Recv].received, d.collective_calls()
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ms {

class Communicator;

enum class CommOp : int {
  AllReduce,
  ReduceScatter,
  AllGather,
  Broadcast,
  Barrier,
  Send,
  Recv,
  RingAllReduce,  // ring.h, made of sends and receives (measured)
  RingReduceScatter,
  RingAllGather,
  AllToAll,          // all_to_all and all_to_all_v (MPI_Alltoall(v); modelled)
  PairwiseAllToAll,  // ring.h's pairwise exchange, made of sends and receives (measured)
};
constexpr int kNumCommOps = 12;
const char* comm_op_name(CommOp op);  // "all_reduce", ..., "ring_all_reduce"
// True when the row's sent/received bytes are counted messages, false when
// they are the ring model of an MPI collective.
bool comm_op_measured(CommOp op);

struct OpTraffic {
  int64_t calls = 0, sent = 0, received = 0, payload = 0;
  OpTraffic& operator+=(const OpTraffic& o);
  OpTraffic& operator-=(const OpTraffic& o);
  bool operator==(const OpTraffic& o) const = default;
};

// A snapshot of a ledger (or a difference of two): value type.
class Traffic {
 public:
  const OpTraffic& operator[](CommOp op) const { return ops_[static_cast<int>(op)]; }
  OpTraffic& operator[](CommOp op) { return ops_[static_cast<int>(op)]; }
  OpTraffic total() const;
  // Calls of everything but send/recv: a hand-written ring must make none.
  int64_t collective_calls() const;
  Traffic& operator+=(const Traffic& o);
  Traffic& operator-=(const Traffic& o);
  Traffic operator+(const Traffic& o) const { return Traffic(*this) += o; }
  Traffic operator-(const Traffic& o) const { return Traffic(*this) -= o; }
  bool operator==(const Traffic& o) const = default;
  // One line per op that was called: "all_reduce 2 calls, sent 96 B, ...".
  std::string describe() const;

 private:
  std::array<OpTraffic, kNumCommOps> ops_{};
};

// The running counters behind a Communicator.
class CommLedger {
 public:
  void add(CommOp op, int64_t calls, int64_t sent, int64_t received, int64_t payload) {
    OpTraffic& t = now_[op];
    t.calls += calls;
    t.sent += sent;
    t.received += received;
    t.payload += payload;
  }
  const Traffic& snapshot() const { return now_; }

 private:
  Traffic now_;
};

// ---- the ring model (what ring.cpp moves for one call on rank `rank` of `size`) ----
struct RingBytes {
  int64_t sent = 0, received = 0;
};
// n elements of `elem` bytes, cut into `size` blocks as ring.cpp cuts them.
RingBytes ring_all_reduce_bytes(int64_t n, int64_t elem, int rank, int size);
// `n_in` = size × the output's numel.
RingBytes ring_reduce_scatter_bytes(int64_t n_in, int64_t elem, int size);
// `n_out` = size × the input's numel.
RingBytes ring_all_gather_bytes(int64_t n_out, int64_t elem, int size);
RingBytes chain_broadcast_bytes(int64_t n, int64_t elem, int rank, int root, int size);
// All-to-all: every block but the own one travels, whatever the algorithm
// (pairwise exchange, ring.h, moves exactly that): sent = Σ_{j≠rank}
// in_counts[j]·elem, received = Σ_{i≠rank} out_counts[i]·elem. With equal
// blocks of an n-element buffer: (P-1)/P · n each way.
RingBytes all_to_all_bytes(const std::vector<int64_t>& in_counts,
                           const std::vector<int64_t>& out_counts, int64_t elem, int rank);

// ---- per-step accounting, for `minispeed train` and the tests ----

// Splits one communicator's traffic into three parts: setup (everything
// before the meter was made: the parameter broadcast, config checks), the
// training steps (between begin_step and end_step) and everything else after
// (loss and validation all-reduces, evaluation's gathers, sampling).
class StepTraffic {
 public:
  explicit StepTraffic(const Communicator& comm);
  void begin_step();
  void end_step();
  int64_t num_steps() const { return steps_; }
  const Traffic& setup() const { return setup_; }
  const Traffic& in_steps() const { return in_steps_; }
  Traffic outside_steps() const;  // since the meter was made, minus in_steps()

 private:
  std::shared_ptr<const CommLedger> ledger_;
  Traffic setup_, in_steps_, step_start_;
  int64_t steps_ = 0;
  bool in_step_ = false;
};

// The bytes a parallelism's formula says its ranks send per training step,
// per op, SUMMED over the D ranks (an exact integer even where D does not
// divide the message; one rank's share is total / D).
struct StepFormula {
  std::string title;  // "ZeRO stage 3, 4 ranks"
  std::string rule;   // the formula in words, with the numbers put in
  Traffic total;      // per op: bytes sent, summed over ranks (calls are not predicted)
  // When not empty: rank r's own bytes per op, checked exactly, for groups
  // whose ranks send different amounts (a pipeline's end stages send less).
  std::vector<Traffic> per_rank;
};

// Data parallelism and ZeRO (Rajbhandari et al. 2020, section 7), fp32 (4
// bytes per element), per optimizer step of `micro_steps` micro-steps on D
// ranks:
//   stage 0 (DDP): all_reduce of the gradients, 2(D-1)/D·Ψ·4 per rank;
//   stage 1:       reduce_scatter (D-1)/D·Ψp·4 + all_gather (D-1)/D·Ψp·4;
//   stage 2:       the same, but it reduce-scatters on every micro-step;
//   stage 3:       all_gather of each block's parameters in forward and again
//                  in backward (every micro-step), reduce_scatter of every
//                  group, all_gather of the resident group (wte, wpe, ln_f)
//                  after the step: (D-1)/D·4·(2G·(Ψp-R) + R + G·Ψp), which is
//                  1.5× stage 1's volume when R = 0 and G = 1;
//   stages 1-3 add the global gradient norm: all_reduce of one f64.
// Ψ = parameters; Ψp = Σ over the stage's flat groups of their padded size
// (flat_params.h); R = the padded size of the groups that stay gathered.
// Mixed precision (parallel/zero/mixed_precision.h) changes two terms:
// `param_bytes` = 2, the 16-bit parameters all-gathered (the gradient
// reductions stay 4 bytes an element on the wire: MPI has no 16-bit sum, so
// the backend reduces 16-bit buffers in f32, communicator.cpp), and
// `overflow_flag`, the all_reduce of one i32 by which every rank agrees to
// skip a step (parallel/comm/overflow.h).
StepFormula zero_step_formula(int stage, int dp_size, int64_t micro_steps, int64_t psi,
                              int64_t psi_padded, int64_t resident_padded,
                              int64_t param_bytes = 4, bool overflow_flag = false);

// Measured against the formula, one op.
struct OpCheck {
  CommOp op;
  std::vector<int64_t> sent;  // per rank, summed over all steps
  int64_t formula_total = 0;  // summed over ranks, per step
  bool match = false;
};
// Per op: the ranks' sent bytes summed over ranks must equal the formula's
// total × steps exactly, and each rank must be within 2 elements (8 bytes)
// per call of the mean (the ring's uneven blocks when D does not divide n).
std::vector<OpCheck> check_against_formula(const std::vector<Traffic>& per_rank_steps,
                                           int64_t steps, const StepFormula& formula);

// Collective over `comm`: every rank's `mine`, in rank order, on every rank
// (an all_gather, itself counted in comm's ledger after `mine` was taken).
std::vector<Traffic> gather_traffic(Communicator& comm, const Traffic& mine);

// Collective over `comm`: gathers every rank's meter; rank 0 gets the table
// (bytes sent per step by op and rank, beside the formula; then the traffic
// outside the steps); the other ranks get "". `*all_match` (if given) is set
// on every rank.
std::string traffic_report(Communicator& comm, const StepTraffic& meter, const StepFormula& formula,
                           bool* all_match = nullptr);

}  // namespace ms
