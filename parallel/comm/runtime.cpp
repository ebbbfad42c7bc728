// DistributedRuntime and the abort-on-error rule (see runtime.h).
#include "parallel/comm/runtime.h"

#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>

namespace ms {

namespace {

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::terminate_handler g_previous_terminate = nullptr;
int g_ranks_on_this_node = 1;
thread_local std::string t_activity;

int world_size() {
  int size = 1;
  if (mpi_running()) MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// what() alone can say too little: std::bad_alloc's is "std::bad_alloc".
std::string describe(const std::exception& e) {
  std::string what = dynamic_cast<const std::bad_alloc*>(&e)
                         ? std::string("out of memory (") + e.what() + ")"
                         : std::string(e.what());
  if (!current_activity().empty() && !dynamic_cast<const Error*>(&e))
    what += " while " + current_activity();
  return what;
}

// Ranks sharing a machine share its cores. Left alone, every rank would start
// one OpenMP thread per core, and their spinning barriers would thrash (we
// measured a 40x slowdown of elementwise ops at 4 ranks on 2 cores). Like
// torchrun, which sets OMP_NUM_THREADS=1 for multi-process jobs, give each
// rank cores / (ranks on this node) threads unless the user chose.
void share_cores_between_local_ranks() {
  MPI_Comm local;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) !=
      MPI_SUCCESS)
    return;
  int local_size = 1;
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  g_ranks_on_this_node = local_size;
  if (std::getenv("OMP_NUM_THREADS") != nullptr) return;
  if (local_size > 1) omp_set_num_threads(std::max(1, omp_get_num_procs() / local_size));
}

// An exception nobody caught: say what it was and on which rank, then abort
// the job (the default handler would only kill this one process).
void terminate_with_rank() {
  std::string what = "std::terminate called";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = describe(ex);
    } catch (...) {
      what = "an uncaught exception of unknown type";
    }
  }
  abort_job(what);
}

}  // namespace

ActivityNote::ActivityNote(std::string what)
    : previous_(std::move(t_activity)), exceptions_(std::uncaught_exceptions()) {
  t_activity = std::move(what);
}
// Unwound by an exception, the note stays: the handler that reports the
// exception runs after this destructor and still needs to say what failed.
ActivityNote::~ActivityNote() {
  if (std::uncaught_exceptions() == exceptions_) t_activity = std::move(previous_);
}
void ActivityNote::update(std::string what) { t_activity = std::move(what); }
const std::string& current_activity() { return t_activity; }

int ranks_on_this_node() { return g_ranks_on_this_node; }

void abort_job(const std::string& message) {
  int rank = 0;
  const bool running = mpi_running();
  if (running) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Alone there is no job to take down, and MPI_Abort would only add its banner.
  if (world_size() == 1) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }
  std::fprintf(stderr, "[rank %d] error: %s\n", rank, message.c_str());
  std::fflush(stderr);
  if (running) MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

DistributedRuntime::DistributedRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MS_CHECK(rc == MPI_SUCCESS, "DistributedRuntime: MPI_Init_thread failed (code ", rc, ")");
    MS_CHECK(provided >= MPI_THREAD_FUNNELED, "DistributedRuntime: MPI provides thread level ",
             provided, ", need MPI_THREAD_FUNNELED");
    owns_mpi_ = true;
    share_cores_between_local_ranks();
    g_previous_terminate = std::set_terminate(terminate_with_rank);
  }
}

DistributedRuntime::~DistributedRuntime() {
  if (!owns_mpi_) return;
  // Leaving the scope by an exception: MPI_Finalize would wait for ranks that
  // may be blocked in a collective this rank will never join, so abort.
  if (std::uncaught_exceptions() > 0 && mpi_running())
    abort_job(
        "an exception is leaving the DistributedRuntime's scope (catch it, or use "
        "ms::run_distributed to see its message)");
  std::set_terminate(g_previous_terminate);
  if (mpi_running()) MPI_Finalize();
}

int DistributedRuntime::rank() const {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int DistributedRuntime::size() const {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

int run_distributed(int argc, char** argv, const std::function<int(Communicator& world)>& body) {
  DistributedRuntime runtime(&argc, &argv);
  const bool alone = runtime.size() == 1;
  int rc = 1;
  try {
    Communicator world = runtime.world();
    rc = body(world);
  } catch (const AgreedError& e) {
    if (runtime.rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    if (!alone) abort_job(describe(e));
    std::fprintf(stderr, "error: %s\n", describe(e).c_str());
    return 1;
  } catch (...) {
    if (!alone) abort_job("an exception of unknown type");
    std::fprintf(stderr, "error: an exception of unknown type\n");
    return 1;
  }
  return rc;
}

}  // namespace ms
