// Process-level setup for distributed programs: MPI's lifetime, and the rule
// that a failure on ANY rank ends the whole job quickly and loudly.
//
// Why this matters: in a collective, every rank waits for every other. If rank
// 3 throws (a bad shape, a missing file) and simply exits, ranks 0-2 sit in
// their next all-reduce forever and the job "hangs" with no message. So, as
// docs/architecture.md (Rules: errors) asks and as torchrun/DeepSpeed launchers
// do by killing the group, an uncaught error prints `[rank r] error: <message>`
// and calls MPI_Abort, which makes mpirun kill every process and exit non-zero
// within seconds.
//
//   int main(int argc, char** argv) {
//     return ms::run_distributed(argc, argv, [&](ms::Communicator& world) {
//       ...                 // throw anywhere: the job aborts with the message
//       return 0;
//     });
//   }
//
// Programs started without mpirun work too: MPI then runs a 1-rank world
// ("singleton" init), so the same binary serves laptops and clusters. Alone,
// there is no job to abort: an error is the one line `error: <message>` and
// exit code 1, without MPI_Abort's banner.
#pragma once
#include <functional>
#include <string>

#include "parallel/comm/communicator.h"
#include "tensor/error.h"

namespace ms {

// An error every rank raised identically, because it was decided only from
// values all ranks share (flags checked to agree, an all-reduced loss, an
// all-gathered memory check). No rank is left waiting in a collective, so
// run_distributed needs no abort: rank 0 prints `error: <message>` and every
// rank exits 1. Raising it on some ranks only would leave the others hanging.
class AgreedError : public Error {
 public:
  using Error::Error;
};

// Runs f(); an ms::Error from it becomes an AgreedError. Only for f whose
// outcome depends on nothing but values every rank agrees on.
template <typename F>
auto agreed(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const AgreedError&) {
    throw;
  } catch (const Error& e) {
    throw AgreedError(e.what());
  }
}

// What this thread is doing, for error messages that otherwise say too little
// ("out of memory (std::bad_alloc) while building the model ..."). Scoped:
// the previous note returns when this one is destroyed, unless an exception
// is unwinding it (then the note is kept for the handler that reports it).
class ActivityNote {
 public:
  explicit ActivityNote(std::string what);
  ~ActivityNote();
  ActivityNote(const ActivityNote&) = delete;
  ActivityNote& operator=(const ActivityNote&) = delete;
  void update(std::string what);

 private:
  std::string previous_;
  int exceptions_;  // std::uncaught_exceptions() when the note was made
};
// The innermost note ("" if none).
const std::string& current_activity();

// How many ranks of MPI_COMM_WORLD share this machine (found once, when the
// DistributedRuntime starts; 1 without MPI). They share its memory and cores.
int ranks_on_this_node();

// RAII MPI_Init_thread / MPI_Finalize. Requests MPI_THREAD_FUNNELED: OpenMP
// threads compute, only the main thread talks to MPI. If MPI is already
// initialised it neither initialises nor finalises. With several ranks on
// one machine and OMP_NUM_THREADS unset, each rank gets cores/ranks OpenMP
// threads (at least 1), so ranks do not fight over the cores. While alive, an
// exception that escapes main (std::terminate) is reported with the rank and
// aborts the job instead of leaving the other ranks hanging.
class DistributedRuntime {
 public:
  DistributedRuntime(int* argc = nullptr, char*** argv = nullptr);
  ~DistributedRuntime();
  DistributedRuntime(const DistributedRuntime&) = delete;
  DistributedRuntime& operator=(const DistributedRuntime&) = delete;

  Communicator world() const { return Communicator::world(); }
  int rank() const;
  int size() const;

 private:
  bool owns_mpi_ = false;
};

// Runs body(world) inside a DistributedRuntime. An exception on one of
// several ranks prints `[rank r] error: <what>` to stderr and aborts the job
// (exit != 0); an AgreedError is printed once by rank 0 and every rank returns
// 1. In a 1-rank world any exception prints `error: <what>` (std::bad_alloc as
// "out of memory", with the current activity) and returns 1. Otherwise returns
// body's result (mpirun exits non-zero if any rank returns non-zero).
int run_distributed(int argc, char** argv, const std::function<int(Communicator& world)>& body);

// Prints `[rank r] error: <message>` (r = rank in MPI_COMM_WORLD, 0 without
// MPI) and ends the whole job: MPI_Abort when MPI is running, else exit(1).
[[noreturn]] void abort_job(const std::string& message);

}  // namespace ms
