// Ring reduce-scatter / all-gather / all-reduce over isend/irecv (see
// ring.h for the algorithm and its sources).
//
// Two implementation details beyond the textbook version:
//  * Simultaneous send and receive. Each step posts the receive and the send
//    nonblocking and then waits for both (what MPI_Sendrecv does). Blocking
//    send-then-recv on every rank deadlocks as soon as messages are too big
//    for MPI's eager buffers: everybody sends, nobody receives.
//  * Segmenting (pipelining) within a step. A large block is sent as
//    segments of RingOptions::segment_bytes; received segments land in a
//    small window (RingOptions::window) of scratch slots and are added in
//    while later segments are still in flight, so the adds can overlap the
//    copies and the scratch stays small. NCCL does the same with its chunks
//    (and also pipelines across steps).
// Every message goes through Communicator::isend_internal/irecv_internal,
// which count its bytes in the ledger under the ring collective's own row
// (ring_all_reduce, ...): the one place where a collective's wire bytes are
// measured rather than modelled (ledger.h).
#include "parallel/comm/ring.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace ms {

using namespace comm_detail;

namespace {

constexpr int kRingTag = Communicator::kMaxUserTag + 1;  // reserved: never matches user traffic
// RingOptions' defaults, measured (bench/bench_collectives.cpp, 2 and 4
// ranks on one machine, Open MPI's shared-memory transport): each message
// costs a rendezvous handshake and, with single-copy CMA, a syscall in which
// the *receiving* process does the copy itself — so the copy cannot overlap
// this rank's additions anyway, and small segments only add overhead (64 KB
// segments ran at ~0.6x MPI_Allreduce; 4 MB matched it). Blocks up to 4 MB go
// as one message; larger ones are pipelined, which also bounds the scratch
// memory to `window` segments. On networks (or GPUs, where a DMA engine
// copies), smaller chunks pay off: NCCL's are ~128-512 KB.

// Block c of n elements split D ways: the first n % D blocks get one extra.
struct Blocks {
  int64_t n;
  int d;
  int64_t start(int c) const { return c * (n / d) + std::min<int64_t>(c, n % d); }
  int64_t len(int c) const { return n / d + (c < n % d ? 1 : 0); }
};

int mod(int a, int d) {
  return ((a % d) + d) % d;
}

Tensor slice(const Tensor& flat, int64_t start, int64_t len) {
  return Tensor::make_view(flat, {len}, {1}, flat.offset() + start);
}

// One ring step: send buf[send_start, +len_s) to `next`, receive `prev`'s
// block for [recv_start, +len_r). With `reduce`, the incoming data is
// combined into buf with `op`; without, it is written straight into buf.
// Both sides cut a block into the same segments, so messages match 1:1 (MPI
// keeps messages between a pair of ranks on one tag in order).
void ring_step(Communicator& comm, const Tensor& buf, int64_t send_start, int64_t send_len,
               int64_t recv_start, int64_t recv_len, bool reduce, ReduceOp op,
               const RingOptions& opt, CommOp as) {
  const int64_t window = opt.window;
  const int d = comm.size(), r = comm.rank();
  const int next = mod(r + 1, d), prev = mod(r - 1, d);
  const int64_t seg = std::max<int64_t>(1, opt.segment_bytes / int64_t(dtype_size(buf.dtype())));
  const int64_t nsend = (send_len + seg - 1) / seg, nrecv = (recv_len + seg - 1) / seg;
  auto seg_len = [seg](int64_t total, int64_t k) { return std::min(seg, total - k * seg); };

  std::vector<Work> recvs(static_cast<size_t>(nrecv));
  std::vector<Tensor> slots;
  auto post_recv = [&](int64_t k) {
    Tensor dst = reduce ? slice(slots[k % window], 0, seg_len(recv_len, k))
                        : slice(buf, recv_start + k * seg, seg_len(recv_len, k));
    recvs[k] = comm.irecv_internal(dst, prev, kRingTag, as);
  };
  // Receives first, so incoming messages find a posted buffer.
  if (reduce) {
    for (int i = 0; i < std::min<int64_t>(window, nrecv); ++i)
      slots.push_back(Tensor::empty({std::min(seg, recv_len)}, buf.dtype()));
    for (int64_t k = 0; k < std::min<int64_t>(window, nrecv); ++k) post_recv(k);
  } else {
    for (int64_t k = 0; k < nrecv; ++k) post_recv(k);
  }
  std::vector<Work> sends;
  sends.reserve(static_cast<size_t>(nsend));
  for (int64_t k = 0; k < nsend; ++k)
    sends.push_back(comm.isend_internal(slice(buf, send_start + k * seg, seg_len(send_len, k)),
                                        next, kRingTag, as));
  const size_t esize = dtype_size(buf.dtype());
  char* base = static_cast<char*>(buf.host_raw_data());
  for (int64_t k = 0; k < nrecv; ++k) {
    recvs[k].wait();
    if (!reduce) continue;
    const Tensor& slot = slots[k % window];
    reduce_into(base + (recv_start + k * seg) * esize, slot.host_raw_data(), seg_len(recv_len, k),
                buf.dtype(), op);
    if (k + window < nrecv) post_recv(k + window);
  }
  for (Work& w : sends) w.wait();
}

// After D-1 steps rank r's block r holds the reduction of every rank's block
// r. At step s, rank r sends block r-s-1 (which it reduced at step s-1) and
// receives block r-s-2 from the previous rank; at the last step, s = D-2,
// that is block r. `buf` is in a reduce dtype (f32/f64/i32).
void reduce_scatter_inplace(Communicator& comm, const Tensor& buf, const Blocks& b, ReduceOp op,
                            const RingOptions& opt, CommOp as) {
  const int d = comm.size(), r = comm.rank();
  for (int s = 0; s < d - 1; ++s) {
    int sb = mod(r - s - 1, d), rb = mod(r - s - 2, d);
    ring_step(comm, buf, b.start(sb), b.len(sb), b.start(rb), b.len(rb), true, op, opt, as);
  }
}

// Rank r's block r is final; pass blocks around until every rank has all:
// at step s send block r-s, receive block r-s-1. Moves raw elements (any dtype).
void all_gather_inplace(Communicator& comm, const Tensor& buf, const Blocks& b,
                        const RingOptions& opt, CommOp as) {
  const int d = comm.size(), r = comm.rank();
  for (int s = 0; s < d - 1; ++s) {
    int sb = mod(r - s, d), rb = mod(r - s - 1, d);
    ring_step(comm, buf, b.start(sb), b.len(sb), b.start(rb), b.len(rb), false, ReduceOp::Sum, opt,
              as);
  }
}

// A flat copy of `t` in its reduce dtype (f32 for bf16/f16).
Tensor reduce_copy(const Tensor& t) {
  DType rd = reduce_dtype(t.dtype());
  Tensor buf = Tensor::empty({t.numel()}, rd);
  convert(t.host_raw_data(), t.dtype(), buf.host_raw_data(), rd, t.numel());
  return buf;
}

void check_options(const RingOptions& opt, const char* op) {
  MS_CHECK(opt.segment_bytes >= 1 && opt.window >= 1, op, ": RingOptions segment_bytes ",
           opt.segment_bytes, " and window ", opt.window, " must both be >= 1");
}

// `big` must hold `d` blocks of small.numel() (the Communicator's contract).
void check_blocks(const Tensor& big, const char* big_name, const Tensor& small,
                  const char* small_name, int d, const char* op) {
  check_tensor(big, op);
  check_tensor(small, op);
  MS_CHECK(big.dtype() == small.dtype(), op, ": ", big_name, " is ", dtype_name(big.dtype()), " ",
           shape_str(big.shape()), " but ", small_name, " is ", dtype_name(small.dtype()), " ",
           shape_str(small.shape()), "; the dtypes must match");
  MS_CHECK(big.numel() == d * small.numel(), op, ": ", big_name, " ", shape_str(big.shape()),
           " has ", big.numel(), " elements but must have comm.size() × ", small_name,
           ".numel() = ", d, " × ", small.numel(), " = ", d * small.numel());
}

}  // namespace

void ring_all_reduce(Communicator& comm, Tensor& t, ReduceOp op, const RingOptions& opt) {
  check_tensor(t, "ring_all_reduce");
  check_options(opt, "ring_all_reduce");
  comm.record_call(CommOp::RingAllReduce, int64_t(t.nbytes()));
  const int d = comm.size(), r = comm.rank();
  if (d == 1) return;  // the sum, max or average of one value is itself
  const Blocks b{t.numel(), d};
  const bool native = reduce_dtype(t.dtype()) == t.dtype();
  Tensor flat = Tensor::make_view(t, {t.numel()}, {1}, t.offset());
  Tensor buf = native ? flat : reduce_copy(t);
  reduce_scatter_inplace(comm, buf, b, op, opt, CommOp::RingAllReduce);
  char* own = static_cast<char*>(buf.host_raw_data()) + b.start(r) * dtype_size(buf.dtype());
  if (op == ReduceOp::Avg) divide(own, b.len(r), buf.dtype(), d);
  if (!native) {
    // Round our finished block back to bf16/f16 now and gather in 16 bits:
    // the same result as gathering f32 and rounding after, half the bytes.
    char* dst = static_cast<char*>(t.host_raw_data()) + b.start(r) * dtype_size(t.dtype());
    convert(own, buf.dtype(), dst, t.dtype(), b.len(r));
  }
  all_gather_inplace(comm, flat, b, opt, CommOp::RingAllReduce);
}

void ring_reduce_scatter(Communicator& comm, const Tensor& in, Tensor& out, ReduceOp op,
                         const RingOptions& opt) {
  const int d = comm.size(), r = comm.rank();
  check_blocks(in, "in", out, "out", d, "ring_reduce_scatter");
  check_options(opt, "ring_reduce_scatter");
  comm.record_call(CommOp::RingReduceScatter, int64_t(in.nbytes()));
  const Blocks b{in.numel(), d};
  Tensor buf = reduce_copy(in);  // `in` is const: reduce in a copy
  reduce_scatter_inplace(comm, buf, b, op, opt, CommOp::RingReduceScatter);
  char* own = static_cast<char*>(buf.host_raw_data()) + b.start(r) * dtype_size(buf.dtype());
  if (op == ReduceOp::Avg) divide(own, b.len(r), buf.dtype(), d);
  convert(own, buf.dtype(), out.host_raw_data(), out.dtype(), out.numel());
}

void ring_all_gather(Communicator& comm, const Tensor& in, Tensor& out, const RingOptions& opt) {
  const int d = comm.size(), r = comm.rank();
  check_blocks(out, "out", in, "in", d, "ring_all_gather");
  check_options(opt, "ring_all_gather");
  comm.record_call(CommOp::RingAllGather, int64_t(out.nbytes()));
  const Blocks b{out.numel(), d};
  // memmove: `in` may already be block r of `out` (an in-place all-gather).
  std::memmove(static_cast<char*>(out.host_raw_data()) + b.start(r) * dtype_size(out.dtype()),
               in.host_raw_data(), in.nbytes());
  Tensor flat = Tensor::make_view(out, {out.numel()}, {1}, out.offset());
  all_gather_inplace(comm, flat, b, opt, CommOp::RingAllGather);
}

}  // namespace ms

// ---------------------------------------------------------------- all-to-all
namespace ms {

namespace {

constexpr int kAllToAllTag = Communicator::kMaxUserTag + 2;  // reserved, apart from the ring's

std::vector<int64_t> prefix_sums(const std::vector<int64_t>& counts) {
  std::vector<int64_t> start(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) start[i + 1] = start[i] + counts[i];
  return start;
}

}  // namespace

void pairwise_all_to_all_v(Communicator& comm, const Tensor& in,
                           const std::vector<int64_t>& in_counts, Tensor& out,
                           const std::vector<int64_t>& out_counts) {
  const int p = comm.size(), r = comm.rank();
  check_tensor(in, "pairwise_all_to_all_v");
  check_tensor(out, "pairwise_all_to_all_v");
  MS_CHECK(in.dtype() == out.dtype(), "pairwise_all_to_all_v: in is ", dtype_name(in.dtype()),
           " but out is ", dtype_name(out.dtype()), "; the dtypes must match");
  check_counts(in, in_counts, p, "pairwise_all_to_all_v", "in_counts");
  check_counts(out, out_counts, p, "pairwise_all_to_all_v", "out_counts");
  MS_CHECK(in_counts[r] == out_counts[r], "pairwise_all_to_all_v: rank ", r, " keeps ",
           in_counts[r], " elements of its own but expects ", out_counts[r], " from itself");
  comm.record_call(CommOp::PairwiseAllToAll, int64_t(in.nbytes()));
  const std::vector<int64_t> in_at = prefix_sums(in_counts), out_at = prefix_sums(out_counts);
  const size_t esize = dtype_size(in.dtype());
  if (in_counts[r] > 0)
    std::memcpy(static_cast<char*>(out.host_raw_data()) + out_at[r] * esize,
                static_cast<const char*>(in.host_raw_data()) + in_at[r] * esize,
                size_t(in_counts[r]) * esize);
  Tensor in_flat = Tensor::make_view(in, {in.numel()}, {1}, in.offset());
  Tensor out_flat = Tensor::make_view(out, {out.numel()}, {1}, out.offset());
  for (int s = 1; s < p; ++s) {
    const int to = mod(r + s, p), from = mod(r - s, p);
    // Empty blocks still send their (empty) message: a count mismatch then
    // surfaces as recv's size error instead of a hang.
    Tensor dst = slice(out_flat, out_at[from], out_counts[from]);
    Work rw = comm.irecv_internal(dst, from, kAllToAllTag, CommOp::PairwiseAllToAll);
    Work sw = comm.isend_internal(slice(in_flat, in_at[to], in_counts[to]), to, kAllToAllTag,
                                  CommOp::PairwiseAllToAll);
    rw.wait();
    sw.wait();
  }
}

void pairwise_all_to_all(Communicator& comm, const Tensor& in, Tensor& out) {
  const int p = comm.size();
  MS_CHECK(in.numel() == out.numel() && in.numel() % p == 0, "pairwise_all_to_all: in ",
           shape_str(in.shape()), " and out ", shape_str(out.shape()),
           " must have the same numel, a multiple of the ", p, " ranks");
  const std::vector<int64_t> counts(size_t(p), in.numel() / p);
  pairwise_all_to_all_v(comm, in, counts, out, counts);
}

}  // namespace ms
