// Communicator: argument checks and dtype handling, independent of the backend.
// The MPI backend (and why every op is nonblocking underneath) is in mpi_backend.cpp.
#include "parallel/comm/communicator.h"

#include <cstdlib>
#include <cstring>

#include "parallel/comm/staging.h"
#include "tensor/device_kernels.h"  // KernelScope

namespace ms {

const char* reduce_op_name(ReduceOp op) {
  static const char* names[] = {"sum", "avg", "max"};
  return names[static_cast<int>(op)];
}

// ---------------------------------------------------------------- helpers
namespace comm_detail {

static void check_layout(const Tensor& t, const char* op, bool through_mpi = true) {
  MS_CHECK(t.defined(), op, ": the tensor is undefined");
  MS_CHECK(t.is_contiguous(), op, ": tensor of shape ", shape_str(t.shape()), " (strides ",
           shape_str(t.strides()),
           ") is not contiguous; collectives move raw bytes, so pass "
           "contiguous(t) (and copy_ the result back if you need it in the original)");
  if (through_mpi)
    MS_CHECK(t.numel() <= INT_MAX, op, ": tensor of shape ", shape_str(t.shape()), " has ",
             t.numel(), " elements; MPI counts stop at ", INT_MAX, " (split it into chunks)");
}

void check_tensor(const Tensor& t, const char* op) {
  MS_CHECK(t.defined(), op, ": the tensor is undefined");
  MS_CHECK(t.device() == Device::CPU, op, ": tensor of shape ", shape_str(t.shape()), " is on ",
           device_name(t.device()), "; this backend moves CPU tensors only");
  check_layout(t, op);
}

void check_tensor(const Tensor& t, const char* op, const Backend& backend) {
  MS_CHECK(t.defined(), op, ": the tensor is undefined");
  // Every device is accepted: one the backend does not move natively (Sim;
  // CUDA under MS_BACKEND=mpi) is staged through a host copy (staging.h), so
  // it goes through MPI and meets MPI's count limit.
  const bool native_device = t.device() != Device::CPU && backend.moves(t.device());
  check_layout(t, op, !native_device);
}

DType reduce_dtype(DType dtype) {
  return (dtype == DType::BF16 || dtype == DType::F16) ? DType::F32 : dtype;
}

// Calls f(T{}) with the C++ type of a reduce dtype.
template <typename F>
static void visit_reduce_dtype(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32:
      return f(float{});
    case DType::F64:
      return f(double{});
    case DType::I32:
      return f(int32_t{});
    default:
      MS_ASSERT(false, op, ": ", dtype_name(dtype), " is not a reduce dtype");
  }
}

void reduce_into(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op) {
  visit_reduce_dtype(dtype, "reduce_into", [&](auto zero) {
    using T = decltype(zero);
    T* d = static_cast<T*>(dst);
    const T* s = static_cast<const T*>(src);
    if (op == ReduceOp::Max) {
      for (int64_t i = 0; i < n; ++i) d[i] = s[i] > d[i] ? s[i] : d[i];
    } else {  // Sum, and Avg (divided once at the end)
      for (int64_t i = 0; i < n; ++i) d[i] += s[i];
    }
  });
}

void divide(void* data, int64_t n, DType dtype, int divisor) {
  visit_reduce_dtype(dtype, "divide", [&](auto zero) {
    using T = decltype(zero);
    T* x = static_cast<T*>(data);
    for (int64_t i = 0; i < n; ++i) x[i] /= static_cast<T>(divisor);
  });
}

void convert(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(from));
  } else if (to == DType::F32) {
    auto* s = static_cast<const uint16_t*>(src);
    auto* d = static_cast<float*>(dst);
    if (from == DType::BF16) {
      for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
    }
  } else {
    auto* s = static_cast<const float*>(src);
    auto* d = static_cast<uint16_t*>(dst);
    MS_ASSERT(from == DType::F32, "convert: from ", dtype_name(from), " to ", dtype_name(to));
    if (to == DType::BF16) {
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]);
    }
  }
}

void check_counts(const Tensor& t, const std::vector<int64_t>& counts, int size, const char* op,
                  const char* which) {
  MS_CHECK(int64_t(counts.size()) == size, op, ": ", which, " has ", counts.size(),
           " entries but the communicator has ", size, " ranks (one count per rank)");
  int64_t sum = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    MS_CHECK(counts[i] >= 0, op, ": ", which, "[", i, "] = ", counts[i], " is negative");
    sum += counts[i];
  }
  MS_CHECK(sum == t.numel(), op, ": ", which, " sum to ", sum, " elements but the tensor ",
           shape_str(t.shape()), " has ", t.numel());
}

}  // namespace comm_detail

using namespace comm_detail;

// ---------------------------------------------------------------- backends
bool Backend::moves(Device device) const {
  return device == Device::CPU;
}

DType Backend::wire_reduce_dtype(const Tensor& t) const {
  return reduce_dtype(t.dtype());
}

Work Backend::all_to_all(const Tensor&, Tensor&, bool) {
  throw Error(str_cat("all_to_all: the ", name(), " backend has no all-to-all (MS_BACKEND=mpi has)"));
}

Work Backend::all_to_all_v(const Tensor&, const std::vector<int64_t>&, Tensor&,
                           const std::vector<int64_t>&, bool) {
  throw Error(
      str_cat("all_to_all_v: the ", name(), " backend has no all-to-all (MS_BACKEND=mpi has)"));
}

const char* backend_kind_name(BackendKind kind) {
  return kind == BackendKind::NCCL ? "nccl" : "mpi";
}

BackendKind backend_from_env() {
  const char* s = std::getenv("MS_BACKEND");
  if (s == nullptr || *s == '\0' || std::strcmp(s, "mpi") == 0) return BackendKind::MPI;
  MS_CHECK(std::strcmp(s, "nccl") == 0, "MS_BACKEND='", s,
           "' is not a backend (valid: mpi, the default; nccl, in a make CUDA=1 build)");
  return BackendKind::NCCL;
}

// ---------------------------------------------------------------- Communicator
Communicator::Communicator(std::shared_ptr<Backend> backend)
    : backend_(std::move(backend)), ledger_(std::make_shared<CommLedger>()) {
  MS_CHECK(backend_ != nullptr, "Communicator: null backend");
}

void Communicator::set_timeout(double seconds) {
  MS_CHECK(seconds >= 0, "Communicator::set_timeout: ", seconds, " s is negative (0 turns it off)");
  backend_->set_timeout(seconds);
}

static void check_same_dtype(const Tensor& in, const Tensor& out, const char* op) {
  MS_CHECK(in.dtype() == out.dtype(), op, ": in is ", dtype_name(in.dtype()), " ",
           shape_str(in.shape()), " but out is ", dtype_name(out.dtype()), " ",
           shape_str(out.shape()), "; the dtypes must match");
}

static void check_no_overlap(const Tensor& a, const Tensor& b, const char* op) {
  // Addresses compared, never read: device memory is fine here.
  KernelScope scope(op, a.device());
  auto* a0 = static_cast<const char*>(a.device_raw_data());
  auto* b0 = static_cast<const char*>(b.device_raw_data());
  bool disjoint =
      a0 + a.nbytes() <= b0 || b0 + b.nbytes() <= a0 || a.numel() == 0 || b.numel() == 0;
  MS_CHECK(disjoint, op, ": in and out overlap in memory; use separate tensors");
}

// The ledger's model of MPI's collectives (ledger.h): what a ring moves,
// reductions in their reduce dtype.
static int64_t reduce_elem(const Backend& backend, const Tensor& t) {
  return static_cast<int64_t>(dtype_size(backend.wire_reduce_dtype(t)));
}

static void check_same_device(const Tensor& in, const Tensor& out, const char* op) {
  MS_CHECK(in.device() == out.device(), op, ": in is on ", device_name(in.device()),
           " but out is on ", device_name(out.device()), "; both must be on one device");
}

// A group of one rank: every collective is the identity (Sum, Avg and Max of
// one value are the value; a bf16 round trip through f32 is exact), so
// nothing is handed to the transport and nothing enters the ledger, as
// Megatron's tp mappings (_reduce, _gather_along_first_dim) return their input
// when the group's world size is 1 (docs/architecture.md, "Communication
// ledger"): a tp-only run's 1-rank dp group then costs no call at all. Arguments are still checked,
// so a wrong call fails the same way on one rank as on many.
static void copy_alone(const Tensor& in, Tensor& out) {
  copy_on_device(out, in);  // on the tensors' own device (staging.h)
}

Work Communicator::start_all_reduce(Tensor& t, ReduceOp op, bool blocking) {
  check_tensor(t, "all_reduce", *backend_);
  if (size() == 1) return Work();
  RingBytes b = ring_all_reduce_bytes(t.numel(), reduce_elem(*backend_, t), rank(), size());
  ledger_->add(CommOp::AllReduce, 1, b.sent, b.received, int64_t(t.nbytes()));
  if (needs_staging(t, *backend_)) {
    Tensor host = t.to(Device::CPU);
    return copy_back_when_done(backend_->all_reduce(host, op, blocking), host, t);
  }
  return backend_->all_reduce(t, op, blocking);
}

Work Communicator::start_reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool blocking) {
  check_tensor(in, "reduce_scatter", *backend_);
  check_tensor(out, "reduce_scatter", *backend_);
  check_same_dtype(in, out, "reduce_scatter");
  check_same_device(in, out, "reduce_scatter");
  MS_CHECK(in.numel() == size() * out.numel(), "reduce_scatter: in ", shape_str(in.shape()),
           " has ", in.numel(), " elements but must have size() × out.numel() = ", size(), " × ",
           out.numel(), " = ", size() * out.numel(), " (out ", shape_str(out.shape()),
           "; rank r receives block r)");
  check_no_overlap(in, out, "reduce_scatter");
  if (size() == 1) {
    copy_alone(in, out);
    return Work();
  }
  RingBytes b = ring_reduce_scatter_bytes(in.numel(), reduce_elem(*backend_, in), size());
  ledger_->add(CommOp::ReduceScatter, 1, b.sent, b.received, int64_t(in.nbytes()));
  if (needs_staging(in, *backend_)) {
    Tensor host_out = Tensor::empty(out.shape(), out.dtype());
    return copy_back_when_done(
        backend_->reduce_scatter(in.to(Device::CPU), host_out, op, blocking), host_out, out);
  }
  return backend_->reduce_scatter(in, out, op, blocking);
}

Work Communicator::start_all_gather(const Tensor& in, Tensor& out, bool blocking) {
  check_tensor(in, "all_gather", *backend_);
  check_tensor(out, "all_gather", *backend_);
  check_same_dtype(in, out, "all_gather");
  check_same_device(in, out, "all_gather");
  MS_CHECK(out.numel() == size() * in.numel(), "all_gather: out ", shape_str(out.shape()), " has ",
           out.numel(), " elements but must have size() × in.numel() = ", size(), " × ", in.numel(),
           " = ", size() * in.numel(), " (in ", shape_str(in.shape()), ")");
  check_no_overlap(in, out, "all_gather");
  if (size() == 1) {
    copy_alone(in, out);
    return Work();
  }
  RingBytes b = ring_all_gather_bytes(out.numel(), int64_t(dtype_size(out.dtype())), size());
  ledger_->add(CommOp::AllGather, 1, b.sent, b.received, int64_t(out.nbytes()));
  if (needs_staging(in, *backend_)) {
    Tensor host_out = Tensor::empty(out.shape(), out.dtype());
    return copy_back_when_done(backend_->all_gather(in.to(Device::CPU), host_out, blocking),
                               host_out, out);
  }
  return backend_->all_gather(in, out, blocking);
}

Work Communicator::start_broadcast(Tensor& t, int root, bool blocking) {
  check_tensor(t, "broadcast", *backend_);
  MS_CHECK(root >= 0 && root < size(), "broadcast: root ", root, " is not a rank of this ", size(),
           "-rank communicator (valid: 0..", size() - 1, ")");
  if (size() == 1) return Work();
  RingBytes b =
      chain_broadcast_bytes(t.numel(), int64_t(dtype_size(t.dtype())), rank(), root, size());
  ledger_->add(CommOp::Broadcast, 1, b.sent, b.received, int64_t(t.nbytes()));
  if (needs_staging(t, *backend_)) {
    Tensor host = t.to(Device::CPU);
    return copy_back_when_done(backend_->broadcast(host, root, blocking), host, t);
  }
  return backend_->broadcast(t, root, blocking);
}

Work Communicator::start_barrier() {
  if (size() == 1) return Work();
  ledger_->add(CommOp::Barrier, 1, 0, 0, 0);
  return backend_->barrier(true);
}

// The ledger counts what leaves and enters the rank: every block but its own
// (all_to_all_bytes), whichever algorithm MPI picks (ledger.h).
Work Communicator::start_all_to_all(const Tensor& in, Tensor& out, bool blocking) {
  check_tensor(in, "all_to_all", *backend_);
  check_tensor(out, "all_to_all", *backend_);
  check_same_dtype(in, out, "all_to_all");
  check_same_device(in, out, "all_to_all");
  MS_CHECK(in.numel() == out.numel() && in.numel() % size() == 0, "all_to_all: in ",
           shape_str(in.shape()), " and out ", shape_str(out.shape()),
           " must have the same numel, a multiple of the ", size(),
           " ranks (size() equal blocks, block j for rank j); use all_to_all_v for uneven blocks");
  check_no_overlap(in, out, "all_to_all");
  if (size() == 1) {
    copy_alone(in, out);
    return Work();
  }
  const std::vector<int64_t> counts(size_t(size()), in.numel() / size());
  RingBytes b = all_to_all_bytes(counts, counts, int64_t(dtype_size(in.dtype())), rank());
  ledger_->add(CommOp::AllToAll, 1, b.sent, b.received, int64_t(in.nbytes()));
  return backend_->all_to_all(in, out, blocking);
}

Work Communicator::start_all_to_all_v(const Tensor& in, const std::vector<int64_t>& in_counts,
                                      Tensor& out, const std::vector<int64_t>& out_counts,
                                      bool blocking) {
  check_tensor(in, "all_to_all_v", *backend_);
  check_tensor(out, "all_to_all_v", *backend_);
  check_same_dtype(in, out, "all_to_all_v");
  check_same_device(in, out, "all_to_all_v");
  check_counts(in, in_counts, size(), "all_to_all_v", "in_counts");
  check_counts(out, out_counts, size(), "all_to_all_v", "out_counts");
  check_no_overlap(in, out, "all_to_all_v");
  if (size() == 1) {
    copy_alone(in, out);
    return Work();
  }
  RingBytes b = all_to_all_bytes(in_counts, out_counts, int64_t(dtype_size(in.dtype())), rank());
  ledger_->add(CommOp::AllToAll, 1, b.sent, b.received, int64_t(in.nbytes()));
  return backend_->all_to_all_v(in, in_counts, out, out_counts, blocking);
}

static void check_peer(int peer, int size, int tag, int max_tag, const char* op) {
  MS_CHECK(peer >= 0 && peer < size, op, ": peer rank ", peer, " is not in this ", size,
           "-rank communicator (valid: 0..", size - 1, ")");
  MS_CHECK(tag >= 0 && tag <= max_tag, op, ": tag ", tag, " is out of range (valid: 0..", max_tag,
           "; higher tags are reserved for the library)");
}

// Messages are counted exactly; as a row of their own, or (internal
// traffic) inside the ring collective they belong to, which counted the call.
Work Communicator::start_send(const Tensor& t, int dst, int tag, int max_tag, bool blocking,
                              CommOp as) {
  check_tensor(t, "send", *backend_);
  check_peer(dst, size(), tag, max_tag, "send");
  const int64_t n = int64_t(t.nbytes());
  if (as == CommOp::Send)
    ledger_->add(as, 1, n, 0, n);
  else
    ledger_->add(as, 0, n, 0, 0);
  if (needs_staging(t, *backend_)) {
    Tensor host = t.to(Device::CPU);
    return keep_until_done(backend_->send(host, dst, tag, blocking), host);
  }
  return backend_->send(t, dst, tag, blocking);
}

Work Communicator::start_recv(Tensor& t, int src, int tag, int max_tag, bool blocking, CommOp as) {
  check_tensor(t, "recv", *backend_);
  check_peer(src, size(), tag, max_tag, "recv");
  const int64_t n = int64_t(t.nbytes());
  if (as == CommOp::Recv)
    ledger_->add(as, 1, 0, n, n);
  else
    ledger_->add(as, 0, 0, n, 0);
  if (needs_staging(t, *backend_)) {
    Tensor host = Tensor::empty(t.shape(), t.dtype());
    return copy_back_when_done(backend_->recv(host, src, tag, blocking), host, t);
  }
  return backend_->recv(t, src, tag, blocking);
}

Work Communicator::isend_internal(const Tensor& t, int dst, int tag, CommOp as) {
  MS_ASSERT(tag > kMaxUserTag, "isend_internal: tag ", tag, " is a user tag");
  return start_send(t, dst, tag, INT_MAX, false, as);
}

Work Communicator::irecv_internal(Tensor& t, int src, int tag, CommOp as) {
  MS_ASSERT(tag > kMaxUserTag, "irecv_internal: tag ", tag, " is a user tag");
  return start_recv(t, src, tag, INT_MAX, false, as);
}

Communicator Communicator::split(int color, int key) const {
  MS_CHECK(color >= 0, "split: color ", color, " must be >= 0");
  return Communicator(backend_->split(color, key));
}

}  // namespace ms
