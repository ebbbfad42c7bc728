// Communicator: the collectives every parallelism is built from (all-reduce,
// reduce-scatter, all-gather, broadcast) plus point-to-point send/recv, on our
// tensors.
//
// The shape of the API follows torch.distributed / DeepSpeed's `comm` module:
// a Communicator is a group of ranks, passed explicitly (docs/architecture.md:
// no hidden globals); every op has a blocking form and a nonblocking `i...`
// form that returns a Work handle. The transport sits behind an abstract
// Backend, so another transport (NCCL, nccl_backend.h) implements the
// same few virtual calls (Backend below) while data_parallel / zero / pipeline
// code stays unchanged. Communicator::world() creates the backend, split()
// derives one per group.
//
// Rules, checked with errors that name the op:
//   * tensors are contiguous (collectives move raw bytes), on any device: the
//     backend moves its own devices (MPI: the CPU; NCCL: CUDA, and the CPU
//     through MPI) and any other goes through a host copy (staging.h: Sim,
//     CUDA under MS_BACKEND=mpi), counted in the ledger like a CPU tensor;
//   * any dtype: f32, f64, i32 are reduced natively; bf16 and f16 are storage
//     types, so reductions convert them to f32, reduce, and round back once
//     (round-to-nearest-even), like mixed-precision training expects;
//   * Avg = Sum / size (for i32 that is C++ integer division).
//
// Every op is counted in the communicator's ledger (ledger.h): calls and
// bytes sent and received, per op kind; traffic() reads it.
//
// A communicator of one rank issues no collective: all_reduce, broadcast and
// barrier return at once, reduce_scatter and all_gather copy in to out, and
// the ledger records nothing (0 calls), after the same argument checks.
//
// Backends (BackendKind): "mpi", the default, moves CPU tensors over Open
// MPI; "nccl" (nccl_backend.h, a `make CUDA=1` build) moves CUDA tensors with
// NCCL and hands CPU tensors to MPI. world() picks one from MS_BACKEND.
//
// Timeouts: a communicator has one (600 s unless MS_COMM_TIMEOUT says
// otherwise, in seconds; 0 turns it off; set_timeout changes it). If a wait
// — a blocking op, or Work::wait() — lasts longer, the rank prints
//   [rank r] error: all_reduce on a communicator of size N timed out after S s ...
// and aborts the whole job instead of hanging forever (see runtime.h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm/ledger.h"
#include "tensor/tensor.h"

namespace ms {

enum class ReduceOp { Sum, Avg, Max };
const char* reduce_op_name(ReduceOp op);

// A pending nonblocking operation. wait() blocks until it is complete (and has
// finished its post-processing, e.g. bf16 round-back or the Avg division);
// test() polls without blocking. A default-constructed Work is already done.
// Like std::jthread, a Work destroyed before completion waits for it, because
// the transport may still be reading or writing the tensors' memory.
class Work {
 public:
  struct Impl {
    virtual ~Impl() = default;
    virtual bool test() = 0;  // true once complete (post-processing done)
    virtual void wait() = 0;
  };
  Work() = default;
  explicit Work(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  void wait() {
    if (impl_) impl_->wait();
  }
  bool test() { return !impl_ || impl_->test(); }

 private:
  std::shared_ptr<Impl> impl_;
};

// What a transport must provide: each op, started. `blocking` says the
// caller will wait at once, so the backend may use a blocking primitive
// (MPI's blocking collectives choose faster algorithms than its nonblocking
// schedules); the returned Work is then already complete. Arguments arrive
// already checked by the Communicator.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void set_timeout(double seconds) = 0;  // 0 = wait forever
  virtual double timeout() const = 0;
  virtual Work all_reduce(Tensor& t, ReduceOp op, bool blocking) = 0;
  virtual Work reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool blocking) = 0;
  virtual Work all_gather(const Tensor& in, Tensor& out, bool blocking) = 0;
  virtual Work broadcast(Tensor& t, int root, bool blocking) = 0;
  virtual Work send(const Tensor& t, int dst, int tag, bool blocking) = 0;
  virtual Work recv(Tensor& t, int src, int tag, bool blocking) = 0;
  virtual Work barrier(bool blocking) = 0;
  // All-to-all (Communicator::all_to_all_v's contract; counts and displacements
  // in elements, already checked). Not pure, so a backend written before it
  // still builds: the default is an ms::Error naming the backend.
  virtual Work all_to_all(const Tensor& in, Tensor& out, bool blocking);
  virtual Work all_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts,
                            Tensor& out, const std::vector<int64_t>& out_counts, bool blocking);
  virtual std::shared_ptr<Backend> split(int color, int key) = 0;
  // Whether this backend moves tensors on `device` (the MPI backend: CPU only).
  virtual bool moves(Device device) const;
  // The dtype in which a reduction of `t` crosses the wire, for the ledger:
  // comm_detail::reduce_dtype for MPI (16-bit floats summed in f32); NCCL
  // reduces bf16/f16 natively.
  virtual DType wire_reduce_dtype(const Tensor& t) const;
};

enum class BackendKind { MPI, NCCL };
const char* backend_kind_name(BackendKind kind);  // "mpi", "nccl"
// MS_BACKEND: "mpi" (also when unset or empty) or "nccl"; anything else is an
// ms::Error naming the valid values.
BackendKind backend_from_env();

class Communicator {
 public:
  // User tags are 0..kMaxUserTag; higher ones are reserved for the library's
  // own point-to-point traffic (the ring collectives), so they never match a
  // user's message.
  static constexpr int kMaxUserTag = 29999;

  explicit Communicator(std::shared_ptr<Backend> backend);
  // All processes of the job (MPI_COMM_WORLD), with the timeout taken from
  // MS_COMM_TIMEOUT (unset: 600 s; 0: none) and the backend from MS_BACKEND
  // (backend_from_env). MPI must be initialised: create an
  // ms::DistributedRuntime first (runtime.h). With MPI not a collective call;
  // with NCCL a collective one (every rank joins ncclCommInitRank). Each call
  // returns a communicator with a ledger of its own.
  static Communicator world();
  static Communicator world(BackendKind kind);

  int rank() const { return backend_->rank(); }
  int size() const { return backend_->size(); }
  Backend& backend() const { return *backend_; }

  // Seconds a wait may last before aborting the job; 0 turns it off.
  // Communicators made by split() inherit it. Ranks may differ in it: it
  // never changes which MPI call an op makes (a blocking op is always MPI's
  // blocking collective, watched by a watchdog thread; a nonblocking op is
  // polled against the clock in wait()), because MPI never matches a
  // blocking collective with a nonblocking one. The rule that remains is the
  // caller's: every rank calls a collective in the same form — all_reduce
  // everywhere, or iall_reduce everywhere.
  static constexpr double kDefaultTimeout = 600;
  void set_timeout(double seconds);
  double timeout() const { return backend_->timeout(); }

  // What this communicator (and its copies) moved so far; subtract two
  // snapshots for the traffic in between (ledger.h).
  Traffic traffic() const { return ledger_->snapshot(); }
  std::shared_ptr<const CommLedger> ledger() const { return ledger_; }

  // ---- collectives: every rank of the communicator must call them, in the same order ----
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) { start_all_reduce(t, op, true).wait(); }
  // `in` holds size() blocks of out.numel() elements; rank r receives the
  // reduction of everyone's block r.
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op = ReduceOp::Sum) {
    start_reduce_scatter(in, out, op, true).wait();
  }
  // `out` holds size() blocks of in.numel() elements; block r is rank r's `in`.
  void all_gather(const Tensor& in, Tensor& out) { start_all_gather(in, out, true).wait(); }
  void broadcast(Tensor& t, int root) { start_broadcast(t, root, true).wait(); }
  void barrier() { start_barrier().wait(); }

  // Nonblocking: start now, wait() (or poll test()) later. The tensors must
  // stay untouched until then.
  Work iall_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) {
    return start_all_reduce(t, op, false);
  }
  Work ireduce_scatter(const Tensor& in, Tensor& out, ReduceOp op = ReduceOp::Sum) {
    return start_reduce_scatter(in, out, op, false);
  }
  Work iall_gather(const Tensor& in, Tensor& out) { return start_all_gather(in, out, false); }
  Work ibroadcast(Tensor& t, int root) { return start_broadcast(t, root, false); }

  // ---- all-to-all (MPI_Alltoall / MPI_Alltoallv): the exchange of Ulysses
  // and of MoE's token dispatch ----
  // Equal blocks: `in` and `out` hold size() blocks of in.numel()/size()
  // elements (dim 0 split in size() blocks); block j of `in` goes to rank j,
  // block i of `out` comes from rank i. The own block is copied locally.
  void all_to_all(const Tensor& in, Tensor& out) { start_all_to_all(in, out, true).wait(); }
  Work iall_to_all(const Tensor& in, Tensor& out) { return start_all_to_all(in, out, false); }
  // Uneven blocks: `in` is in_counts[0] elements for rank 0, then
  // in_counts[1] for rank 1, ...; `out` is out_counts[i] elements from rank i,
  // in rank order. Counts are elements (not bytes), zero allowed; rank i's
  // in_counts[j] must equal rank j's out_counts[i] (the MPI backend reports a
  // mismatch as an MPI error when it can; the caller must agree on them).
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                    const std::vector<int64_t>& out_counts) {
    start_all_to_all_v(in, in_counts, out, out_counts, true).wait();
  }
  Work iall_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                     const std::vector<int64_t>& out_counts) {
    return start_all_to_all_v(in, in_counts, out, out_counts, false);
  }

  // ---- point to point: `recv` must match the sender's numel and dtype ----
  void send(const Tensor& t, int dst, int tag = 0) {
    start_send(t, dst, tag, kMaxUserTag, true).wait();
  }
  void recv(Tensor& t, int src, int tag = 0) { start_recv(t, src, tag, kMaxUserTag, true).wait(); }
  Work isend(const Tensor& t, int dst, int tag = 0) {
    return start_send(t, dst, tag, kMaxUserTag, false);
  }
  Work irecv(Tensor& t, int src, int tag = 0) {
    return start_recv(t, src, tag, kMaxUserTag, false);
  }
  // Library-internal traffic on the reserved tags (kMaxUserTag < tag), for
  // collectives built from messages (ring.h): `as` names the ledger row the
  // bytes go to, after record_call(as, ...) counted the call itself.
  Work isend_internal(const Tensor& t, int dst, int tag, CommOp as);
  Work irecv_internal(Tensor& t, int src, int tag, CommOp as);
  void record_call(CommOp op, int64_t payload_bytes) { ledger_->add(op, 1, 0, 0, payload_bytes); }

  // Collective: ranks with the same `color` form a new communicator, ordered
  // by `key` (ties by rank), like MPI_Comm_split. The mesh builds its dp, tp
  // and pp groups with it.
  Communicator split(int color, int key) const;

 private:
  // Check the arguments (errors name the op), then hand over to the backend.
  Work start_all_reduce(Tensor& t, ReduceOp op, bool blocking);
  Work start_reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool blocking);
  Work start_all_gather(const Tensor& in, Tensor& out, bool blocking);
  Work start_broadcast(Tensor& t, int root, bool blocking);
  // `as`: the ledger row (Send/Recv, or the ring collective they serve).
  Work start_send(const Tensor& t, int dst, int tag, int max_tag, bool blocking,
                  CommOp as = CommOp::Send);
  Work start_recv(Tensor& t, int src, int tag, int max_tag, bool blocking,
                  CommOp as = CommOp::Recv);
  Work start_barrier();
  Work start_all_to_all(const Tensor& in, Tensor& out, bool blocking);
  Work start_all_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                          const std::vector<int64_t>& out_counts, bool blocking);

  std::shared_ptr<Backend> backend_;
  std::shared_ptr<CommLedger> ledger_;
};

// Pieces shared by the backends and the hand-written ring algorithms.
namespace comm_detail {
// CPU, contiguous, numel within an MPI count; the error names `op` and the shape.
void check_tensor(const Tensor& t, const char* op);
// Defined and contiguous, on any device (one `backend` does not move is
// staged through the host, staging.h); what goes through MPI within its count.
void check_tensor(const Tensor& t, const char* op, const Backend& backend);
// The dtype a reduction runs in: f32 for bf16/f16, else the dtype itself.
DType reduce_dtype(DType dtype);
// dst[i] = dst[i] (op) src[i] for n elements of a reduce dtype (Avg sums).
void reduce_into(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op);
// data[i] /= divisor (the Avg step after a Sum).
void divide(void* data, int64_t n, DType dtype, int divisor);
// Converts n elements between a storage dtype and its reduce dtype.
void convert(const void* src, DType from, void* dst, DType to, int64_t n);
// The checks all_to_all_v makes (also used by pairwise_all_to_all_v, ring.h):
// `counts` has size() non-negative entries summing to t.numel(); the error
// names `op`, `which` ("in_counts"/"out_counts") and the shapes.
void check_counts(const Tensor& t, const std::vector<int64_t>& counts, int size, const char* op,
                  const char* which);
}  // namespace comm_detail

}  // namespace ms
