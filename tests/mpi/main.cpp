// The multi-process test runner: Catch2 on every rank of an MPI job.
//
//   mpirun -np 4 build/mpi_tests [catch2 args]
//
// Every rank runs the same test cases in the same order (their collectives
// must match). Rank 0 prints Catch's normal report; the other ranks keep
// theirs and print it, each line prefixed `[rank r]`, only if they failed.
// Then the failure counts are all-reduced, so every rank (and mpirun) exits
// non-zero when any rank failed (docs/architecture.md, Testing). Colour is
// off unless stdout is a terminal of our own: Open MPI's mpirun hands every
// rank a pseudo-terminal whatever its own stdout is (a file, a pipe), which
// fooled Catch's terminal check and filled redirected logs with escape
// codes. An explicit --use-colour / --colour-mode still wins.
//
// The communicator timeout is shorter here than the library's 600 s
// (MS_COMM_TIMEOUT, default 60 s): a test that leaves one rank in a
// collective the others skipped aborts the job with the op's name instead of
// holding CI for ten minutes.
//
// Probes for scripts/test-mpi-errors.sh (they replace the test run):
//   --ms-probe-error-on-rank R   rank R throws ms::Error while the others wait in a barrier
//   --ms-probe-uncaught-on-rank R  same, but the exception escapes main (std::terminate path)
//   --ms-probe-skip-collective R rank R skips an all_reduce; the others time out after 2 s
#ifdef MS_CATCH2_V3
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "parallel/comm/runtime.h"

namespace {

int probe_error(ms::Communicator& world, int bad_rank) {
  if (world.rank() == bad_rank)
    throw ms::Error(ms::str_cat("probe: rank ", bad_rank, " fails on purpose"));
  world.barrier();  // without the abort, the other ranks would wait here forever
  return 0;
}

int probe_skip(ms::Communicator& world, int lazy_rank) {
  world.set_timeout(2);
  ms::Tensor t = ms::ones({16});
  if (world.rank() != lazy_rank) world.all_reduce(t);
  return 0;
}

int run_tests(ms::Communicator& world, const std::vector<char*>& args) {
  const int rank = world.rank();
  std::ostringstream captured;
  std::streambuf* cout_buf = std::cout.rdbuf();
  std::vector<char*> argv = args;
  // The other ranks' reports go into a string. Under mpirun (OMPI_COMM_WORLD_SIZE
  // set) rank 0's stdout is mpirun's pseudo-terminal, not the user's.
  if (rank != 0) std::cout.rdbuf(captured.rdbuf());
#ifdef MS_CATCH2_V3
  static char flag[] = "--colour-mode", value[] = "none";
#else
  static char flag[] = "--use-colour", value[] = "no";
#endif
  const bool own_terminal = isatty(STDOUT_FILENO) && std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr;
  bool user_chose = false;
  for (char* a : args) user_chose |= std::strcmp(a, flag) == 0;
  if ((rank != 0 || !own_terminal) && !user_chose) {
    argv.push_back(flag);
    argv.push_back(value);
  }
  int failed = 0;
  try {
    Catch::Session session;
    failed = session.run(static_cast<int>(argv.size()), argv.data());
  } catch (...) {
    std::cout.rdbuf(cout_buf);
    throw;
  }
  std::cout.rdbuf(cout_buf);

  ms::Tensor counts = ms::from_vector(std::vector<int32_t>{failed != 0 ? 1 : 0}, {1});
  world.all_reduce(counts, ms::ReduceOp::Sum);
  const int failed_ranks = counts.host_data<int32_t>()[0];
  if (rank != 0 && failed != 0) {
    std::istringstream lines(captured.str());
    std::ostringstream out;
    for (std::string line; std::getline(lines, line);)
      out << "[rank " << rank << "] " << line << "\n";
    std::cout << out.str() << std::flush;
  }
  world.barrier();  // let the other ranks' reports come out before the summary
  if (rank == 0 && failed_ranks > 0)
    std::cout << "mpi_tests: " << failed_ranks << " of " << world.size()
              << " rank(s) had failures (see [rank r] lines)\n";
  return failed_ranks > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  int error_rank = -1, uncaught_rank = -1, skip_rank = -1;
  for (int i = 0; i < argc; ++i) {
    auto takes = [&](const char* flag, int& into) {
      if (std::strcmp(argv[i], flag) != 0 || i + 1 >= argc) return false;
      into = std::atoi(argv[++i]);
      return true;
    };
    if (takes("--ms-probe-error-on-rank", error_rank) ||
        takes("--ms-probe-uncaught-on-rank", uncaught_rank) ||
        takes("--ms-probe-skip-collective", skip_rank))
      continue;
    args.push_back(argv[i]);
  }
  setenv("MS_COMM_TIMEOUT", "60", /*overwrite=*/0);

  if (error_rank >= 0)
    return ms::run_distributed(argc, argv,
                               [&](ms::Communicator& w) { return probe_error(w, error_rank); });
  if (skip_rank >= 0)
    return ms::run_distributed(argc, argv,
                               [&](ms::Communicator& w) { return probe_skip(w, skip_rank); });
  if (uncaught_rank >= 0) {
    // No run_distributed: the exception leaves main; DistributedRuntime's
    // terminate handler must still name the rank and abort the job.
    ms::DistributedRuntime runtime(&argc, &argv);
    ms::Communicator world = runtime.world();
    if (world.rank() == uncaught_rank) throw ms::Error("probe: uncaught exception");
    world.barrier();
    return 0;
  }
  return ms::run_distributed(argc, argv, [&](ms::Communicator& w) { return run_tests(w, args); });
}
