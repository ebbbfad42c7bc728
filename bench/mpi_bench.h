// What the multi-rank step benchmarks (bench_parallel_step, bench_pipeline_step)
// share: their flags, the OpenMP wait policy, CPU placement, the batch, and how
// a rank left out of a row waits.
#pragma once
#include <mpi.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tensor/random.h"

namespace ms::bench {

// [--steps N] [--quick] (3 timed steps, 1 warm-up) [--only ROWS] (a benchmark
// that has row groups, e.g. bench_parallel_step's "dp"; null when absent). False,
// with the usage printed, on anything else.
inline bool parse_step_flags(int argc, char** argv, int& steps, int& warmup,
                             const char** only = nullptr) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      steps = 3, warmup = 1;
    } else if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      steps = std::atoi(argv[++i]);
    } else if (only != nullptr && std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      *only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--steps N] [--quick]%s\n", argv[0],
                   only != nullptr ? " [--only ROWS]" : "");
      return false;
    }
  }
  return true;
}

// The 1-minute load average ("0.42"), so a row can say how busy the shared
// machine was while it ran; "?" where /proc/loadavg cannot be read.
inline std::string loadavg() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "?";
  char buf[64] = {};
  if (std::fgets(buf, sizeof buf, f) == nullptr) buf[0] = 0;
  std::fclose(f);
  const std::string s(buf);
  return s.substr(0, s.find(' '));
}

// This process's CPU seconds (every thread), to set beside wall time: on a
// loaded machine a step's wall time counts the time it sat descheduled.
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Idle OpenMP threads spinning between parallel regions steal the cores the
// other rank needs (cli/main.cpp sets the same policy). libgomp reads it once,
// at load: setting it takes a re-exec, before MPI starts. On failure, carry on.
inline void use_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);
}

// mpirun binds each rank to one core by default; let this rank run on every
// online CPU (the OS spreads the ranks). May be refused (a cgroup): returns how
// many CPUs the rank may use now.
inline int widen_cpu_affinity() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; ++c) CPU_SET(c, &cpus);
  sched_setaffinity(0, sizeof cpus, &cpus);
  sched_getaffinity(0, sizeof cpus, &cpus);
  return CPU_COUNT(&cpus);
}

// n token ids in [0, vocab) from `gen`: the same batch on every rank.
inline std::vector<int32_t> random_tokens(Generator& gen, int64_t n, int64_t vocab) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& t : v) t = static_cast<int32_t>(gen.next_u64() % static_cast<uint64_t>(vocab));
  return v;
}

// A rank left out of a row (a one-process row runs on rank 0 alone) waits in
// an MPI_Ibarrier it tests every 0.2 ms: MPI's blocking barrier polls and
// would take the core the working rank's second thread needs. release() is
// the working rank's side of the same barrier, when its row is done.
inline void rest_until_released() {
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  for (int done = 0; !done;) {
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    const timespec nap{0, 200'000};
    if (!done) nanosleep(&nap, nullptr);
  }
}
inline void release() {
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  MPI_Wait(&r, MPI_STATUS_IGNORE);
}

}  // namespace ms::bench
