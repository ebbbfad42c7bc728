// Process-level setup for distributed programs: MPI's lifetime, and the rule
// that a failure on ANY rank ends the whole job quickly and loudly.
//
// Why this matters: in a collective, every rank waits for every other. If rank
// 3 throws (a bad shape, a missing file) and simply exits, ranks 0-2 sit in
// their next all-reduce forever and the job "hangs" with no message. So, as
// DESIGN.md asks and as torchrun/DeepSpeed launchers do by killing the group,
// an uncaught error prints `[rank r] error: <message>` and calls MPI_Abort,
// which makes mpirun kill every process and exit non-zero within seconds.
//
//   int main(int argc, char** argv) {
//     return ms::run_distributed(argc, argv, [&](ms::Communicator& world) {
//       ...                 // throw anywhere: the job aborts with the message
//       return 0;
//     });
//   }
//
// Programs started without mpirun work too: MPI then runs a 1-rank world
// ("singleton" init), so the same binary serves laptops and clusters.
#pragma once
#include <functional>
#include <string>

#include "parallel/comm/communicator.h"

namespace ms {

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

// Runs body(world) inside a DistributedRuntime. An exception on any rank
// prints `[rank r] error: <what>` to stderr and aborts the job (exit != 0).
// Returns body's result (mpirun exits non-zero if any rank returns non-zero).
int run_distributed(int argc, char** argv, const std::function<int(Communicator& world)>& body);

// Prints `[rank r] error: <message>` (r = rank in MPI_COMM_WORLD, 0 without
// MPI) and ends the whole job: MPI_Abort when MPI is running, else exit(1).
[[noreturn]] void abort_job(const std::string& message);

}  // namespace ms
