// The MPI backend of Communicator.
//
// Every op has a nonblocking form (MPI_Iallreduce, MPI_Isend, ...) wrapped in
// an MpiWork. That gives overlap (start the all-reduce of a gradient bucket,
// keep computing, wait later; a lesson on it is planned) and a timeout that
// wait() can watch: it polls MPI_Test against a deadline.
// A blocking op always goes straight to MPI's blocking call: Open MPI's
// coll/tuned picks its algorithm by size and ran up to 2x faster than the
// nonblocking (libnbc) schedule for 16 MB in bench_collectives. Its timeout
// is watched by a watchdog thread instead (below), so the MPI call an op
// makes never depends on the timeout: ranks whose timeouts differ still make
// matching calls (MPI never matches a blocking collective with a nonblocking
// one).
//
// Note on progress: Open MPI advances a nonblocking collective only while some
// MPI call runs on that rank, so code that overlaps work must call test() (or
// wait()) now and then — the same rule NCCL-free PyTorch/Gloo users meet.
#include <mpi.h>

#include <array>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "parallel/comm/communicator.h"
#include "parallel/comm/nccl_backend.h"
#include "parallel/comm/runtime.h"

namespace ms {

using namespace comm_detail;

// ---------------------------------------------------------------- MPI backend
namespace {

void mpi_check(int rc, const std::string& op) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str_cat(op, ": MPI error: ", std::string(msg, len)));
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT32_T;
    default:
      return MPI_UINT16_T;  // bf16/f16 move as bits; reductions convert to f32 first
  }
}

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::Max ? MPI_MAX : MPI_SUM;
}

std::string timeout_message(const std::string& op, int comm_size, double timeout) {
  return str_cat(op, " on a communicator of size ", comm_size, " timed out after ", timeout,
                 " s (another rank may have failed or skipped it)");
}

// One in-flight MPI request. `finish` runs once on completion (with the
// status, for recv's size check); its closure also owns the tensors and
// temporaries MPI reads or writes, so they outlive the request.
class MpiWork final : public Work::Impl {
 public:
  using Finish = std::function<void(const MPI_Status&)>;
  // `kind` names the op in errors; for send/recv also the peer and tag.
  MpiWork(const char* kind, int peer, int tag, int comm_size, double timeout, Finish finish)
      : kind_(kind),
        peer_(peer),
        tag_(tag),
        comm_size_(comm_size),
        timeout_(timeout),
        finish_(std::move(finish)) {}
  // Formatted only when needed: point-to-point ops are issued per segment.
  std::string name() const {
    if (peer_ < 0) return kind_;
    return str_cat(kind_, std::strcmp(kind_, "send") == 0 ? " to" : " from", " rank ", peer_,
                   " (tag ", tag_, ")");
  }
  ~MpiWork() override {
    if (done_ || req_ == MPI_REQUEST_NULL) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    // Unwinding from an error (the job is about to abort): keep the buffers
    // alive forever rather than free memory MPI may still touch.
    if (std::uncaught_exceptions() > 0) {
      new Finish(std::move(finish_));
      return;
    }
    wait();
  }
  MPI_Request* request() { return &req_; }
  // For an op done by a blocking MPI call: run the post-processing now.
  void complete_now(const MPI_Status& st) { complete(st); }

  bool test() override {
    if (done_) return true;
    int flag = 0;
    MPI_Status st;
    mpi_check(MPI_Test(&req_, &flag, &st), name());
    if (flag) complete(st);
    return done_;
  }

  void wait() override {
    if (done_) return;
    MPI_Status st;
    if (timeout_ <= 0) {
      mpi_check(MPI_Wait(&req_, &st), name());
      return complete(st);
    }
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::duration<double>(timeout_);
    for (long spins = 0;; ++spins) {
      int flag = 0;
      mpi_check(MPI_Test(&req_, &flag, &st), name());
      if (flag) return complete(st);
      // Spin briefly for latency, then yield: ranks often outnumber cores.
      if (spins > 100) std::this_thread::yield();
      if (clock::now() > deadline) abort_job(timeout_message(name(), comm_size_, timeout_));
    }
  }

 private:
  void complete(const MPI_Status& st) {
    done_ = true;
    Finish f = std::move(finish_);
    if (f) f(st);
  }
  MPI_Request req_ = MPI_REQUEST_NULL;
  const char* kind_;
  int peer_, tag_;
  int comm_size_;
  double timeout_;
  Finish finish_;
  bool done_ = false;
};

// Watches the one blocking MPI call in progress (only the main thread talks
// to MPI: MPI_THREAD_FUNNELED) and aborts the job when it outlasts its
// deadline. The call itself cannot be interrupted, so a second thread must do
// it. arm/disarm only take an uncontended lock; the thread wakes once a second
// (sooner only for deadlines closer than that), so a blocking op pays no
// syscall for being watched. The abort (abort_job: MPI_Abort) comes from
// this thread while the main thread is inside MPI — outside what
// MPI_THREAD_FUNNELED promises, but the job is being killed anyway, and Open
// MPI's MPI_Abort does kill it from any thread (checked with Open MPI 4.1).
class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;
  static Watchdog& instance() {
    static Watchdog w;
    return w;
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  // `work` (alive until disarm) names the op if the deadline passes.
  void arm(const MpiWork* work, int comm_size, double timeout) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    work_ = work;
    comm_size_ = comm_size;
    timeout_ = timeout;
    deadline_ = Clock::now() +
                std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout));
    armed_ = true;
  }
  void disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      auto wake = Clock::now() + std::chrono::seconds(1);
      if (armed_) wake = std::min(wake, deadline_);
      cv_.wait_until(lock, wake);
      if (armed_ && !stop_ && Clock::now() >= deadline_)
        abort_job(timeout_message(work_->name(), comm_size_, timeout_));
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false, armed_ = false;
  Clock::time_point deadline_;
  const MpiWork* work_ = nullptr;
  int comm_size_ = 0;
  double timeout_ = 0;
};

class MpiBackend final : public Backend {
 public:
  MpiBackend(MPI_Comm comm, bool owned, double timeout)
      : comm_(comm), owned_(owned), timeout_(timeout) {
    mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "communicator");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiBackend() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void set_timeout(double seconds) override { timeout_ = seconds; }
  double timeout() const override { return timeout_; }

  Work all_reduce(Tensor& t, ReduceOp op, bool blocking) override {
    const int64_t n = t.numel();
    Tensor buf = reduce_buffer(t);
    auto w = make("all_reduce", [t, buf, op, n, size = size_](const MPI_Status&) {
      if (op == ReduceOp::Avg) divide(buf.host_raw_data(), n, buf.dtype(), size);
      if (!buf.same(t)) convert(buf.host_raw_data(), buf.dtype(), t.host_raw_data(), t.dtype(), n);
    });
    void* p = buf.host_raw_data();
    MPI_Datatype type = mpi_type(buf.dtype());
    if (blocking)
      return done(w, [&](MPI_Status*) {
        return MPI_Allreduce(MPI_IN_PLACE, p, int(n), type, mpi_op(op), comm_);
      });
    return started(w,
                   MPI_Iallreduce(MPI_IN_PLACE, p, int(n), type, mpi_op(op), comm_, w->request()));
  }

  Work reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool blocking) override {
    const int64_t n = out.numel();
    Tensor inb = reduce_buffer(in), outb = reduce_buffer(out, /*copy=*/false);
    auto w = make("reduce_scatter", [inb, outb, out, op, n, size = size_](const MPI_Status&) {
      if (op == ReduceOp::Avg) divide(outb.host_raw_data(), n, outb.dtype(), size);
      if (!outb.same(out)) convert(outb.host_raw_data(), outb.dtype(), out.host_raw_data(), out.dtype(), n);
    });
    void *src = inb.host_raw_data(), *dst = outb.host_raw_data();
    MPI_Datatype type = mpi_type(outb.dtype());
    if (blocking)
      return done(w, [&](MPI_Status*) {
        return MPI_Reduce_scatter_block(src, dst, int(n), type, mpi_op(op), comm_);
      });
    return started(
        w, MPI_Ireduce_scatter_block(src, dst, int(n), type, mpi_op(op), comm_, w->request()));
  }

  Work all_gather(const Tensor& in, Tensor& out, bool blocking) override {
    auto w = make("all_gather", [in, out](const MPI_Status&) {});
    void *src = in.host_raw_data(), *dst = out.host_raw_data();
    const int n = int(in.numel());
    MPI_Datatype type = mpi_type(in.dtype());
    if (blocking)
      return done(w, [&](MPI_Status*) { return MPI_Allgather(src, n, type, dst, n, type, comm_); });
    return started(w, MPI_Iallgather(src, n, type, dst, n, type, comm_, w->request()));
  }

  Work broadcast(Tensor& t, int root, bool blocking) override {
    auto w = make("broadcast", [t](const MPI_Status&) {});
    void* p = t.host_raw_data();
    const int n = int(t.numel());
    MPI_Datatype type = mpi_type(t.dtype());
    if (blocking) return done(w, [&](MPI_Status*) { return MPI_Bcast(p, n, type, root, comm_); });
    return started(w, MPI_Ibcast(p, n, type, root, comm_, w->request()));
  }

  Work send(const Tensor& t, int dst, int tag, bool blocking) override {
    auto w = make(
        "send", [t](const MPI_Status&) {}, dst, tag);
    void* p = t.host_raw_data();
    const int n = int(t.numel());
    MPI_Datatype type = mpi_type(t.dtype());
    if (blocking)
      return done(w, [&](MPI_Status*) { return MPI_Send(p, n, type, dst, tag, comm_); });
    return started(w, MPI_Isend(p, n, type, dst, tag, comm_, w->request()));
  }

  Work recv(Tensor& t, int src, int tag, bool blocking) override {
    auto w = make(
        "recv",
        [t, src, tag](const MPI_Status& st) {
          int count = 0;
          MPI_Get_count(&st, mpi_type(t.dtype()), &count);
          MS_CHECK(count == t.numel(), "recv from rank ", src, " (tag ", tag, "): expected ",
                   t.numel(), " ", dtype_name(t.dtype()), " elements (shape ", shape_str(t.shape()),
                   ") but the message has ", count,
                   "; sender and receiver must agree on numel and dtype");
        },
        src, tag);
    void* p = t.host_raw_data();
    const int n = int(t.numel());
    MPI_Datatype type = mpi_type(t.dtype());
    if (blocking)
      return done(w, [&](MPI_Status* st) { return MPI_Recv(p, n, type, src, tag, comm_, st); });
    return started(w, MPI_Irecv(p, n, type, src, tag, comm_, w->request()));
  }

  Work barrier(bool blocking) override {
    auto w = make("barrier", [](const MPI_Status&) {});
    if (blocking) return done(w, [&](MPI_Status*) { return MPI_Barrier(comm_); });
    return started(w, MPI_Ibarrier(comm_, w->request()));
  }

  Work all_to_all(const Tensor& in, Tensor& out, bool blocking) override {
    auto w = make("all_to_all", [in, out](const MPI_Status&) {});
    const void* src = in.host_raw_data();
    void* dst = out.host_raw_data();
    const int n = int(in.numel() / size_);
    MPI_Datatype type = mpi_type(in.dtype());
    if (blocking)
      return done(w, [&](MPI_Status*) { return MPI_Alltoall(src, n, type, dst, n, type, comm_); });
    return started(w, MPI_Ialltoall(src, n, type, dst, n, type, comm_, w->request()));
  }

  // MPI takes int counts and displacements, which the request must keep
  // alive until it completes: they live in the Work's finish closure.
  Work all_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                    const std::vector<int64_t>& out_counts, bool blocking) override {
    auto args = std::make_shared<std::array<std::vector<int>, 4>>();
    auto& [sc, sd, rc, rd] = *args;
    for (size_t i = 0; i < in_counts.size(); ++i) {
      sd.push_back(i == 0 ? 0 : sd.back() + sc.back());
      sc.push_back(int(in_counts[i]));
      rd.push_back(i == 0 ? 0 : rd.back() + rc.back());
      rc.push_back(int(out_counts[i]));
    }
    auto w = make("all_to_all_v", [in, out, args](const MPI_Status&) {});
    const void* src = in.host_raw_data();
    void* dst = out.host_raw_data();
    MPI_Datatype type = mpi_type(in.dtype());
    if (blocking)
      return done(w, [&](MPI_Status*) {
        return MPI_Alltoallv(src, sc.data(), sd.data(), type, dst, rc.data(), rd.data(), type,
                             comm_);
      });
    return started(w, MPI_Ialltoallv(src, sc.data(), sd.data(), type, dst, rc.data(), rd.data(),
                                     type, comm_, w->request()));
  }

  std::shared_ptr<Backend> split(int color, int key) override {
    MPI_Comm sub;
    mpi_check(MPI_Comm_split(comm_, color, key, &sub), "split");
    return std::make_shared<MpiBackend>(sub, /*owned=*/true, timeout_);
  }

 private:
  static Work started(const std::shared_ptr<MpiWork>& w, int rc) {
    mpi_check(rc, w->name());
    return Work(w);
  }
  // Runs a blocking MPI call under the watchdog (when there is a timeout),
  // then the op's post-processing.
  template <typename Call>
  Work done(const std::shared_ptr<MpiWork>& w, Call&& call) {
    MPI_Status st{};
    int rc;
    if (timeout_ > 0) {
      Watchdog::instance().arm(w.get(), size_, timeout_);
      rc = call(&st);
      Watchdog::instance().disarm();
    } else {
      rc = call(&st);
    }
    mpi_check(rc, w->name());
    w->complete_now(st);
    return Work(w);
  }
  std::shared_ptr<MpiWork> make(const char* kind, MpiWork::Finish finish, int peer = -1,
                                int tag = -1) {
    return std::make_shared<MpiWork>(kind, peer, tag, size_, timeout_, std::move(finish));
  }
  // `t` itself for f32/f64/i32; a f32 copy (or scratch) for bf16/f16, since
  // MPI's reductions know nothing of 16-bit floats.
  static Tensor reduce_buffer(const Tensor& t, bool copy = true) {
    DType rd = reduce_dtype(t.dtype());
    if (rd == t.dtype()) return t;
    Tensor buf = Tensor::empty({t.numel()}, rd);
    if (copy) convert(t.host_raw_data(), t.dtype(), buf.host_raw_data(), rd, t.numel());
    return buf;
  }

  MPI_Comm comm_;
  bool owned_;
  double timeout_;
  int rank_ = 0, size_ = 1;
};

// On by default: a hang must end. 600 s is far beyond any single op of a
// healthy job here (the slowest, a 64 MB all-reduce on a busy machine, takes
// well under a second), like torch.distributed's default of 10 minutes for
// its process groups.
double timeout_from_env() {
  const char* s = std::getenv("MS_COMM_TIMEOUT");
  if (s == nullptr || *s == '\0') return Communicator::kDefaultTimeout;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  MS_CHECK(end != s && *end == '\0' && v >= 0, "MS_COMM_TIMEOUT='", s,
           "' is not a number of seconds >= 0 (0: no timeout; unset: ",
           Communicator::kDefaultTimeout, ")");
  return v;
}

}  // namespace

Communicator Communicator::world() {
  return world(backend_from_env());
}

Communicator Communicator::world(BackendKind kind) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  MS_CHECK(initialized,
           "Communicator::world(): MPI is not initialised; create an "
           "ms::DistributedRuntime first (or run main's body through ms::run_distributed)");
  auto mpi = std::make_shared<MpiBackend>(MPI_COMM_WORLD, false, timeout_from_env());
  // NCCL is bootstrapped over MPI and keeps it for CPU tensors (nccl_backend.h).
  if (kind == BackendKind::NCCL) return Communicator(make_nccl_backend(mpi));
  return Communicator(mpi);
}

}  // namespace ms
