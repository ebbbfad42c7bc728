// The NCCL backend of Communicator (the design is in nccl_backend.h).
//
// In a CPU build this file holds only make_nccl_backend's error: it must not
// include nccl.h, which a CPU machine may not have.
#include "parallel/comm/nccl_backend.h"

#ifndef MS_CUDA

namespace ms {

std::shared_ptr<Backend> make_nccl_backend(std::shared_ptr<Backend>) {
  throw Error(
      "the nccl backend (MS_BACKEND=nccl, BackendKind::NCCL) is not in this build: build with "
      "`make CUDA=1` (needs the CUDA toolkit and NCCL), or use MS_BACKEND=mpi, which moves CPU "
      "tensors");
}

}  // namespace ms

#else  // MS_CUDA

#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "parallel/comm/runtime.h"

namespace ms {

namespace {

void nccl_check(ncclResult_t rc, const std::string& op, ncclComm_t comm = nullptr) {
  if (rc == ncclSuccess) return;
  std::string detail = ncclGetLastError(comm);
  throw Error(str_cat(op, ": NCCL error: ", ncclGetErrorString(rc),
                      detail.empty() ? "" : " (" + detail + ")"));
}

void cuda_check(cudaError_t rc, const std::string& op) {
  if (rc == cudaSuccess) return;
  throw Error(str_cat(op, ": CUDA error: ", cudaGetErrorString(rc)));
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;  // reduced natively, unlike MPI (nccl_backend.h)
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
  }
  MS_ASSERT(false, "nccl_type: dtype ", int(dtype));
  return ncclFloat32;
}

// ncclAvg is a sum scaled by 1/D (for integers: the sum divided by D, as
// the MPI backend's C++ integer division).
ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::Max ? ncclMax : op == ReduceOp::Avg ? ncclAvg : ncclSum;
}

// ---------------------------------------------------------------- one GPU per rank
// The process's device: its index among the ranks of its node. Chosen once,
// by the first NCCL backend, which is made on every rank of the world
// (Communicator::world(BackendKind::NCCL)): the checks below are collectives
// over MPI_COMM_WORLD.
int g_device = -1;

void select_device() {
  if (g_device >= 0) return;
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  std::string problem;
  if (rc != cudaSuccess || count == 0) {
    problem = str_cat("no CUDA device is visible to this process (",
                      rc != cudaSuccess ? cudaGetErrorString(rc) : "cudaGetDeviceCount found 0",
                      "); the nccl backend moves GPU buffers: run where each rank has a GPU, or "
                      "use MS_BACKEND=mpi");
  } else if (local_size > count) {
    problem = str_cat(local_size, " ranks run on one node that has ", count,
                      " visible GPU(s); the nccl backend needs a GPU per rank, because NCCL "
                      "refuses two ranks of one communicator on one GPU (\"invalid usage\"). Start "
                      "at most ",
                      count, " rank(s) per node (e.g. mpirun -np ", count,
                      " on one machine), or use MS_BACKEND=mpi, which moves CPU tensors");
  }
  // Every rank must agree, or the ranks without a problem would wait in
  // ncclCommInitRank forever: the first rank with one tells everybody.
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  int mine = problem.empty() ? INT_MAX : world_rank, first = INT_MAX;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first != INT_MAX) {
    char text[1024] = {};
    if (world_rank == first) std::strncpy(text, problem.c_str(), sizeof(text) - 1);
    MPI_Bcast(text, sizeof(text), MPI_CHAR, first, MPI_COMM_WORLD);
    throw AgreedError(str_cat("nccl backend (world rank ", first, "'s node): ", text));
  }
  cuda_check(cudaSetDevice(local_rank), str_cat("nccl backend: cudaSetDevice(", local_rank, ")"));
  g_device = local_rank;
}

// ---------------------------------------------------------------- in-flight work
struct Event {
  cudaEvent_t event = nullptr;
  ~Event() {
    if (event != nullptr) cudaEventDestroy(event);
  }
};

// Where a Work learns that its op was launched: `event` is null while a
// send/recv still waits in the queue for its group.
struct Slot {
  std::shared_ptr<Event> event;
};

// One ncclComm and what its Works share: the stream, the timeout, the queue
// of point-to-point ops waiting to be launched as one group (nccl_backend.h).
struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // the legacy default stream (nccl_backend.h)
  double timeout = 0;
  struct Queued {
    std::string name;
    std::function<ncclResult_t(ncclComm_t, cudaStream_t)> launch;
    std::shared_ptr<Slot> slot;
  };
  std::vector<Queued> queue;

  ~NcclState() {
    if (comm != nullptr) ncclCommDestroy(comm);
  }

  std::shared_ptr<Event> record(const std::string& op) {
    auto e = std::make_shared<Event>();
    cuda_check(cudaEventCreateWithFlags(&e->event, cudaEventDisableTiming), op);
    cuda_check(cudaEventRecord(e->event, stream), op);
    return e;
  }

  void flush() {
    if (queue.empty()) return;
    std::vector<Queued> ops = std::move(queue);
    queue.clear();
    const std::string group = str_cat("send/recv group of ", ops.size(), " (", ops[0].name,
                                      ops.size() > 1 ? ", ..." : "", ")");
    nccl_check(ncclGroupStart(), group, comm);
    for (Queued& op : ops) {
      ncclResult_t rc = op.launch(comm, stream);
      if (rc != ncclSuccess) {
        ncclGroupEnd();
        nccl_check(rc, op.name, comm);
      }
    }
    nccl_check(ncclGroupEnd(), group, comm);
    std::shared_ptr<Event> done = record(group);
    for (Queued& op : ops) op.slot->event = done;
  }
};

// A launched (or queued) NCCL op. Holds the tensors so their device memory
// outlives the kernels that read and write it.
class NcclWork final : public Work::Impl {
 public:
  NcclWork(std::string name, std::shared_ptr<NcclState> state, std::shared_ptr<Slot> slot,
           std::vector<Tensor> keep)
      : name_(std::move(name)),
        state_(std::move(state)),
        slot_(std::move(slot)),
        keep_(std::move(keep)) {}
  ~NcclWork() override {
    if (done_) return;
    // Unwinding from an error (the job is about to abort): keep the buffers
    // rather than free memory a kernel may still touch, as MpiWork does.
    if (std::uncaught_exceptions() > 0) {
      new std::vector<Tensor>(std::move(keep_));
      return;
    }
    wait();
  }

  bool test() override {
    if (done_) return true;
    if (!slot_->event) state_->flush();
    if (poll()) finish();
    return done_;
  }

  void wait() override {
    if (done_) return;
    if (!slot_->event) state_->flush();
    using clock = std::chrono::steady_clock;
    const double timeout = state_->timeout;
    const auto deadline = clock::now() + std::chrono::duration<double>(timeout);
    for (long spins = 0; !poll(); ++spins) {
      if (spins > 100) std::this_thread::yield();
      if (timeout > 0 && clock::now() > deadline) {
        // NCCL's kernels wait for the peers forever; abort the communicator
        // so nothing is left spinning on the GPU, then the job.
        ncclCommAbort(state_->comm);
        state_->comm = nullptr;
        abort_job(str_cat(name_, " (nccl) timed out after ", timeout,
                          " s (another rank may have failed or skipped it)"));
      }
    }
    finish();
  }

 private:
  // True once the op's event has passed; an asynchronous NCCL error (a peer
  // died, a network failure) ends the job, since its peers cannot finish.
  bool poll() {
    const cudaError_t q = cudaEventQuery(slot_->event->event);
    if (q == cudaSuccess) return true;
    if (q != cudaErrorNotReady) cuda_check(q, name_);
    ncclResult_t async = ncclSuccess;
    if (state_->comm != nullptr) ncclCommGetAsyncError(state_->comm, &async);
    if (async != ncclSuccess && async != ncclInProgress)
      abort_job(str_cat(name_, " (nccl): ", ncclGetErrorString(async), " ",
                        ncclGetLastError(state_->comm)));
    return false;
  }
  void finish() {
    done_ = true;
    keep_.clear();
  }
  std::string name_;
  std::shared_ptr<NcclState> state_;
  std::shared_ptr<Slot> slot_;
  std::vector<Tensor> keep_;
  bool done_ = false;
};

// ---------------------------------------------------------------- the backend
class NcclBackend final : public Backend {
 public:
  // Collective over cpu's group: rank 0's unique id reaches everyone by
  // MPI_Bcast (the cpu backend's blocking broadcast), then ncclCommInitRank.
  NcclBackend(std::shared_ptr<Backend> cpu, cudaStream_t stream)
      : cpu_(std::move(cpu)), state_(std::make_shared<NcclState>()) {
    MS_CHECK(cpu_ != nullptr, "make_nccl_backend: null cpu backend");
    select_device();
    state_->stream = stream;
    state_->timeout = cpu_->timeout();
    ncclUniqueId id;
    static_assert(sizeof(id) % sizeof(int32_t) == 0);
    Tensor buf = Tensor::empty({int64_t(sizeof(id) / sizeof(int32_t))}, DType::I32);
    if (cpu_->rank() == 0) {
      nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      std::memcpy(buf.device_raw_data(), &id, sizeof(id));
    }
    cpu_->broadcast(buf, 0, true).wait();
    std::memcpy(&id, buf.device_raw_data(), sizeof(id));
    nccl_check(ncclCommInitRank(&state_->comm, cpu_->size(), id, cpu_->rank()),
               str_cat("ncclCommInitRank (rank ", cpu_->rank(), " of ", cpu_->size(), ")"));
  }

  const char* name() const override { return "nccl"; }
  int rank() const override { return cpu_->rank(); }
  int size() const override { return cpu_->size(); }
  void set_timeout(double seconds) override {
    cpu_->set_timeout(seconds);
    state_->timeout = seconds;
  }
  double timeout() const override { return state_->timeout; }
  bool moves(Device device) const override {
    return device == Device::CUDA || cpu_->moves(device);
  }
  DType wire_reduce_dtype(const Tensor& t) const override {
    return t.device() == Device::CUDA ? t.dtype() : cpu_->wire_reduce_dtype(t);
  }
  cudaStream_t stream() const { return state_->stream; }
  void set_stream(cudaStream_t s) {
    state_->flush();
    state_->stream = s;
  }

  Work all_reduce(Tensor& t, ReduceOp op, bool blocking) override {
    if (on_cpu(t)) return cpu_->all_reduce(t, op, blocking);
    void* p = t.device_raw_data();
    return launch("all_reduce", {t}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllReduce(p, p, size_t(t.numel()), nccl_type(t.dtype()), nccl_op(op), c, s);
    });
  }

  Work reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool blocking) override {
    if (on_cpu(in)) return cpu_->reduce_scatter(in, out, op, blocking);
    const void* src = in.device_raw_data();
    void* dst = out.device_raw_data();
    return launch("reduce_scatter", {in, out}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclReduceScatter(src, dst, size_t(out.numel()), nccl_type(out.dtype()), nccl_op(op),
                               c, s);
    });
  }

  Work all_gather(const Tensor& in, Tensor& out, bool blocking) override {
    if (on_cpu(in)) return cpu_->all_gather(in, out, blocking);
    const void* src = in.device_raw_data();
    void* dst = out.device_raw_data();
    return launch("all_gather", {in, out}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllGather(src, dst, size_t(in.numel()), nccl_type(in.dtype()), c, s);
    });
  }

  Work broadcast(Tensor& t, int root, bool blocking) override {
    if (on_cpu(t)) return cpu_->broadcast(t, root, blocking);
    void* p = t.device_raw_data();
    return launch("broadcast", {t}, [&](ncclComm_t c, cudaStream_t s) {
      return ncclBroadcast(p, p, size_t(t.numel()), nccl_type(t.dtype()), root, c, s);
    });
  }

  // Queued until the group is launched (nccl_backend.h); Communicator's
  // blocking send/recv wait at once, which launches it.
  Work send(const Tensor& t, int dst, int tag, bool blocking) override {
    if (on_cpu(t)) return cpu_->send(t, dst, tag, blocking);
    void* p = t.device_raw_data();
    const size_t n = size_t(t.numel());
    const ncclDataType_t type = nccl_type(t.dtype());
    return queue(str_cat("send to rank ", dst), t, [=](ncclComm_t c, cudaStream_t s) {
      return ncclSend(p, n, type, dst, c, s);
    });
  }

  // NCCL cannot check the sender's count: a mismatch is the caller's error
  // (NCCL's rule, stricter than the MPI backend, which reports it).
  Work recv(Tensor& t, int src, int tag, bool blocking) override {
    if (on_cpu(t)) return cpu_->recv(t, src, tag, blocking);
    void* p = t.device_raw_data();
    const size_t n = size_t(t.numel());
    const ncclDataType_t type = nccl_type(t.dtype());
    return queue(str_cat("recv from rank ", src), t, [=](ncclComm_t c, cudaStream_t s) {
      return ncclRecv(p, n, type, src, c, s);
    });
  }

  // All-to-all as NCCL's docs write it: one group of a send and a receive per
  // peer (NCCL has no all-to-all primitive); the own block goes through the
  // same send/recv pair to itself, which NCCL turns into a local copy.
  Work all_to_all(const Tensor& in, Tensor& out, bool blocking) override {
    if (on_cpu(in)) return cpu_->all_to_all(in, out, blocking);
    const std::vector<int64_t> counts(size_t(size()), in.numel() / size());
    return all_to_all_v(in, counts, out, counts, blocking);
  }

  Work all_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                    const std::vector<int64_t>& out_counts, bool blocking) override {
    if (on_cpu(in)) return cpu_->all_to_all_v(in, in_counts, out, out_counts, blocking);
    const char* src = static_cast<const char*>(in.device_raw_data());
    char* dst = static_cast<char*>(out.device_raw_data());
    const size_t esize = dtype_size(in.dtype());
    const ncclDataType_t type = nccl_type(in.dtype());
    return launch("all_to_all", {in, out}, [&](ncclComm_t c, cudaStream_t s) {
      nccl_check(ncclGroupStart(), "all_to_all", c);
      size_t sent = 0, received = 0;
      for (int peer = 0; peer < size(); ++peer) {
        const size_t ns = size_t(in_counts[peer]), nr = size_t(out_counts[peer]);
        if (ns > 0) nccl_check(ncclSend(src + sent * esize, ns, type, peer, c, s), "all_to_all", c);
        if (nr > 0)
          nccl_check(ncclRecv(dst + received * esize, nr, type, peer, c, s), "all_to_all", c);
        sent += ns;
        received += nr;
      }
      return ncclGroupEnd();
    });
  }

  // A host-side barrier (MPI_Barrier): it does not wait for NCCL kernels in
  // flight; wait() on their Works does.
  Work barrier(bool blocking) override {
    state_->flush();
    return cpu_->barrier(blocking);
  }

  std::shared_ptr<Backend> split(int color, int key) override {
    state_->flush();
    return std::make_shared<NcclBackend>(cpu_->split(color, key), state_->stream);
  }

 private:
  // CPU tensors go to MPI, after the queued send/recv are launched (they
  // were issued before this op, so they must not wait behind it).
  bool on_cpu(const Tensor& t) {
    if (t.device() != Device::CPU) return false;
    state_->flush();
    return true;
  }

  template <typename Call>
  Work launch(const char* op, std::vector<Tensor> keep, Call&& call) {
    MS_CHECK(state_->comm != nullptr, op, ": the NCCL communicator was aborted");
    state_->flush();  // issue order: the queued send/recv came first
    nccl_check(call(state_->comm, state_->stream), op, state_->comm);
    auto slot = std::make_shared<Slot>();
    slot->event = state_->record(op);
    return Work(std::make_shared<NcclWork>(op, state_, slot, std::move(keep)));
  }

  Work queue(std::string name, const Tensor& t,
             std::function<ncclResult_t(ncclComm_t, cudaStream_t)> launch) {
    auto slot = std::make_shared<Slot>();
    state_->queue.push_back({name, std::move(launch), slot});
    return Work(std::make_shared<NcclWork>(std::move(name), state_, slot, std::vector<Tensor>{t}));
  }

  std::shared_ptr<Backend> cpu_;
  std::shared_ptr<NcclState> state_;
};

NcclBackend& nccl_of(const Communicator& comm) {
  auto* b = dynamic_cast<NcclBackend*>(&comm.backend());
  MS_CHECK(b != nullptr, "nccl stream: this communicator's backend is ", comm.backend().name(),
           ", not nccl (MS_BACKEND=nccl or Communicator::world(BackendKind::NCCL))");
  return *b;
}

}  // namespace

std::shared_ptr<Backend> make_nccl_backend(std::shared_ptr<Backend> cpu) {
  return std::make_shared<NcclBackend>(std::move(cpu), nullptr);
}

cudaStream_t nccl_stream(const Communicator& comm) {
  return nccl_of(comm).stream();
}

void set_nccl_stream(Communicator& comm, cudaStream_t stream) {
  nccl_of(comm).set_stream(stream);
}

}  // namespace ms

#endif  // MS_CUDA
