// What every lesson grader (lessons/NN_topic/check.cpp) shares: how it reports.
// A grader's output is its interface: the learner reads "PASS: ..." and
// "FAIL: ..." lines ending in one final PASS or FAIL, and
// scripts/check-lessons.sh reads only the exit code (every solution must exit
// 0, every untouched exercise non-zero). One copy keeps all lessons saying it
// the same way. Each check.cpp keeps its own checks and hints.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/comm/runtime.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms::lesson {

// ---- one process (lessons 01-04) ----

// Stops at the first failed check: later checks build on earlier results, so
// their failures would only bury the one that explains. Exit 1 = failed.
[[noreturn]] inline void fail(const std::string& what) {
  std::cout << "FAIL: " << what << "\n";
  std::exit(1);
}
inline void pass(const std::string& what) {
  std::cout << "PASS: " << what << "\n";
}

// main(): runs the checks, then prints the final PASS. An exception from the
// learner's code (every exercise stub throws "TODO: ...") becomes a FAIL line
// and exit 1 rather than std::terminate's "terminate called after..." and an
// abort: the learner reads their own message, and the script sees an ordinary
// failure, not a crash.
template <class Checks>
int run_checks(Checks&& checks) {
  try {
    checks();
  } catch (const Error& e) {
    fail(str_cat("your code threw ms::Error: ", e.what()));
  } catch (const std::exception& e) {
    fail(str_cat("your code threw: ", e.what()));
  }
  std::cout << "PASS\n";
  return 0;
}

// ---- several ranks (lessons 05-08, 10, 14, under mpirun) ----

// The verdict of a failed multi-rank check, also written to the file named by
// MS_LESSON_VERDICT (set by scripts/run-lesson.sh, which re-prints it after
// mpirun returns: the diagnosis is then the last thing the learner reads,
// whatever the ranks and Open MPI printed after it). The first verdict of the
// job is the one that explains: the file is created exclusively ("x"), so
// the first rank to write wins and later verdicts leave it alone.
inline void record_verdict(const std::string& text) {
  const char* path = std::getenv("MS_LESSON_VERDICT");
  if (path == nullptr || *path == '\0') return;
  if (std::FILE* f = std::fopen(path, "wx")) {
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
}

// main() of a multi-rank lesson: ms::run_distributed, with an exception from
// the learner's code (which aborts the job: a rank may be inside a
// collective) recorded as the verdict first, so run-lesson.sh shows it last.
inline int run_ranks(int argc, char** argv, const std::function<int(Communicator&)>& body) {
  return run_distributed(argc, argv, [&body](Communicator& world) {
    try {
      return body(world);
    } catch (const std::exception& e) {
      record_verdict(str_cat("[rank ", world.rank(), "] error: ", e.what(),
                             "\nFAIL: your code threw on rank ", world.rank(),
                             "; the job was aborted\n"));
      throw;
    }
  });
}
// No exception handling here: ms::run_distributed turns an exception on any
// rank into "[rank r] error: ..." and aborts the whole job.

// One check's verdict across all ranks. Each rank passes `why`: "" if its own
// result is right, else what looks wrong. Every rank must reach the same
// verdict before anything is printed: a rank that failed alone and returned
// would leave the others waiting forever in their next collective (a hang, not
// a FAIL), and four ranks each explaining would interleave into noise. So the
// verdicts are all-reduced; the lowest failing rank alone prints its `why`,
// followed by `sep` and "(k of D ranks failed)", and after a barrier (the
// explanation before the verdict) rank 0 prints "PASS: what" or "FAIL: what".
// Returns whether every rank passed: the same value on every rank, so all
// ranks take the same branch next.
inline bool agree(Communicator& world, const std::string& why, const std::string& what,
                  const char* sep = "\n  ") {
  const int d = world.size(), r = world.rank();
  // Max of (d - r) over the failing ranks picks the lowest failing rank.
  Tensor votes = from_vector(std::vector<int32_t>{why.empty() ? 0 : 1}, {1});
  Tensor first = from_vector(std::vector<int32_t>{why.empty() ? 0 : d - r}, {1});
  world.all_reduce(votes, ReduceOp::Sum);
  world.all_reduce(first, ReduceOp::Max);
  const int failed = votes.host_data<int32_t>()[0], reporter = d - first.host_data<int32_t>()[0];
  if (failed > 0 && r == reporter) {
    const std::string diagnosis = str_cat("[rank ", r, "] ", why, sep, "(", failed, " of ", d,
                                          " ranks failed)\n");
    std::printf("%s", diagnosis.c_str());
    record_verdict(str_cat(diagnosis, "FAIL: ", what, "\n"));
  }
  std::fflush(stdout);
  world.barrier();
  if (r == 0) std::printf("%s: %s\n", failed ? "FAIL" : "PASS", what.c_str());
  std::fflush(stdout);
  return failed == 0;
}

// Measured traffic, per rank (lessons 05 and 07). `mine` is this rank's ledger
// difference around the learner's code (Traffic before = comm.traffic(); ...;
// comm.traffic() - before: parallel/comm/ledger.h). Collective over `world`:
// every rank's numbers are gathered, and rank 0 prints one line per rank, each
// op that rank called with its calls and bytes. Send/recv (and the library's
// ring collectives) are counted messages; MPI's collectives are counted as a
// ring would move them, so their rows say "ring-model bytes". Returns every
// rank's Traffic, in rank order, on every rank.
inline std::vector<Traffic> print_traffic_per_rank(Communicator& world, const Traffic& mine,
                                                   const std::string& indent = "    ") {
  std::vector<Traffic> all = gather_traffic(world, mine);
  if (world.rank() == 0) {
    for (size_t r = 0; r < all.size(); ++r) {
      std::string line;
      for (int i = 0; i < kNumCommOps; ++i) {
        const OpTraffic& o = all[r][CommOp(i)];
        if (o.calls == 0) continue;
        std::string bytes;
        // A receive's bytes are what it received (even 0); a send's, what it sent.
        const bool is_recv = CommOp(i) == CommOp::Recv;
        if (!is_recv && (o.sent > 0 || o.received == 0)) bytes = str_cat(", sent ", o.sent, " B");
        if (is_recv || o.received > 0) bytes += str_cat(", received ", o.received, " B");
        line += str_cat(line.empty() ? "" : "; ", comm_op_name(CommOp(i)), " ", o.calls,
                        o.calls == 1 ? " call" : " calls", bytes,
                        comm_op_measured(CommOp(i)) ? "" : " (ring-model bytes)");
      }
      std::printf("%srank %zu: %s\n", indent.c_str(), r,
                  line.empty() ? "no communication" : line.c_str());
    }
  }
  std::fflush(stdout);
  return all;
}

// The end of main's body: rank 0 prints the final PASS or FAIL; every rank
// returns the exit code (mpirun exits non-zero if any rank does).
inline int finish(Communicator& world, bool ok) {
  if (world.rank() == 0) std::printf(ok ? "PASS\n" : "FAIL\n");
  return ok ? 0 : 1;
}

}  // namespace ms::lesson
