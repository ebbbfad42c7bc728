// The NCCL backend of Communicator: GPU buffers moved by NCCL's kernels, the
// same Communicator API as the MPI backend (communicator.h), so data
// parallelism, ZeRO, tensor and pipeline parallelism need no change to run on
// it. Chosen with MS_BACKEND=nccl or Communicator::world(BackendKind::NCCL), in
// a `make CUDA=1` build; in a CPU build asking for it is an ms::Error.
//
// How it is put together (nccl_backend.cpp has the details):
//   * Bootstrapped over MPI, as NCCL's own docs do it with MPI and as
//     torch.distributed does with its TCP store: rank 0 of a group makes an
//     ncclUniqueId and broadcasts it (MPI_Bcast over the group's MPI
//     communicator); every rank then calls ncclCommInitRank.
//   * One GPU per rank: the rank's index among the ranks on its node
//     (MPI_Comm_split_type, MPI_COMM_TYPE_SHARED), modulo the GPUs it sees,
//     picks cudaSetDevice (local_gpu_index below). NCCL refuses two ranks of
//     one communicator on one GPU ("invalid usage"), so the ranks of a node
//     compare their GPUs' UUIDs first and a shared GPU is our error, saying
//     how to run instead (one GPU per rank, or MS_BACKEND=mpi).
//   * Two transports in one group, like torch.distributed's "cpu:gloo,
//     cuda:nccl": CUDA tensors go to NCCL, CPU tensors to the group's MPI
//     backend (config agreement checks, loss all-reduces, the ledger's
//     gathers keep working unchanged).
//   * Subgroups (split(), so the mesh's dp/tp/pp groups) get their own
//     ncclComm from a fresh unique id broadcast over the sub-group's MPI
//     communicator — the same bootstrap as the world's. (ncclCommSplit would
//     derive it from the parent and may share its resources; one bootstrap path
//     is easier to read.)
//   * bf16/f16 reduce natively in NCCL (MPI has no 16-bit sum, so the MPI
//     backend reduces them in f32): half the bytes on the wire, and rounding
//     at every step of NCCL's ring instead of once at the end, so results may
//     differ from the MPI backend's in the last bits.
//
// Streams (the rule: docs/architecture.md, "Streams"): NCCL enqueues its
// kernels on a CUDA stream and returns at once. The backend launches on the
// process's NCCL stream (one for all its communicators, so ops run in issue
// order; set_nccl_stream may choose another, never the legacy stream 0),
// while minispeed's kernels run on the device's main stream
// (tensor/cuda/runtime.h). Before each launch the NCCL stream waits on an
// event recorded on the main stream (the kernels that wrote the buffer come
// first); after it, the op's event is recorded on the NCCL stream, and the
// Work's wait() makes the main stream wait on it (llm.c's
// multi_gpu_async_reduce_gradient, PyTorch's ProcessGroupNCCL). Between
// launch and wait() the main stream runs on: that is the overlap. wait() also
// polls the event on the host against the timeout, so once it returns the
// result is in device memory — the same promise the MPI backend makes — and
// only then does the Work drop the tensors it holds, so the caching allocator
// cannot hand a block NCCL still uses to a kernel.
//
// Point to point: NCCL has no tags and matches sends and receives between
// two ranks in the order they are issued; a send and a receive issued one
// after the other on one stream deadlock head-to-head (NVIDIA/nccl#479)
// unless they are one group (ncclGroupStart/End). So isend/irecv of CUDA
// tensors are queued and launched together, as one group, at the next wait(),
// test(), blocking op or collective on this backend — a pipeline's "post the
// sends and receives, then wait" runs as one group, like Megatron's
// batch_isend_irecv. The tag is checked by Communicator and otherwise unused;
// NCCL cannot check that a receive's count matches the send (the MPI backend
// reports it), so a mismatch is the caller's bug.
//
// Timeouts: wait() polls the op's event against the communicator's timeout
// (MS_COMM_TIMEOUT) and ncclCommGetAsyncError; past it, or on an
// asynchronous NCCL error, the communicator is aborted (ncclCommAbort) and
// then the job (abort_job), as the MPI backend's watchdog does. The bootstrap
// (ncclCommInitRank) is not watched.
//
// The ledger (ledger.h) keeps the MPI backend's ring model, with one change:
// a reduction of a CUDA tensor is counted in the tensor's own dtype
// (wire_reduce_dtype), so bf16/f16 gradients move 2 bytes an element instead
// of 4, and the 16-bit gradient terms of zero_step_formula halve on NCCL
// (the formula still assumes MPI's 4). Where NCCL's real wire differs from
// the model: it picks an algorithm per call (NCCL_ALGO) — the ring moves
// exactly the model's 2(D-1)/D·n per all_reduce, but a tree (small messages,
// across nodes) moves about 2n per rank, and NVLS on NVSwitch machines
// (H100/H200 HGX: the switch does the sum) about n out and n in. Broadcast
// is NCCL's ring, the model's chain; send/recv are exact. The bootstrap's
// 128-byte unique-id broadcast is not in the ledger.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"

namespace ms {

// The GPU a rank uses, as an index among the `visible` devices it sees:
// local_rank % visible. With every GPU of the node visible that is the local
// rank itself (rank r on GPU r); under the common launch that gives each rank
// its own GPU by CUDA_VISIBLE_DEVICES=<local rank> (torchrun-style wrappers,
// Slurm's --gpus-per-task=1) every rank sees exactly one device, index 0. The
// count alone cannot tell that launch from several ranks on one GPU, so
// whether two ranks share a GPU is decided by shared_gpu_problem, on UUIDs.
// Requires visible > 0.
int local_gpu_index(int local_rank, int visible);
// "" when no two ranks of a node use one GPU; otherwise names the first GPU
// (UUID) and the local ranks on it. uuids: one per local rank, "" for a rank
// without a GPU (its own error is reported elsewhere).
std::string shared_gpu_problem(const std::vector<std::string>& uuids);

// `cpu` is the group's MPI backend: it bootstraps NCCL and moves CPU tensors.
// Collective over cpu's group. In a CPU build: an ms::Error telling to build
// with `make CUDA=1` (or to use MS_BACKEND=mpi).
std::shared_ptr<Backend> make_nccl_backend(std::shared_ptr<Backend> cpu);

}  // namespace ms

#ifdef MS_CUDA
#include <cuda_runtime_api.h>

namespace ms {

// The stream the NCCL backend of `comm` launches on (see above). Errors if
// comm's backend is not NCCL.
cudaStream_t nccl_stream(const Communicator& comm);
// Launch comm's later ops on `stream` (not nullptr: the legacy stream is
// refused). The events order it against the main stream as they do the
// default one; the main stream itself is allowed (no overlap, no events).
void set_nccl_stream(Communicator& comm, cudaStream_t stream);
// The process's own NCCL stream, the default of every NCCL communicator.
cudaStream_t nccl_default_stream_of(const Communicator& comm);

// The rank's GPU for NCCL (nccl_backend_device.cpp): local_gpu_index of its
// rank on the node, made current with cudaSetDevice, after every rank of the
// world agreed that each has a GPU of its own (an AgreedError naming the way
// out otherwise). Chosen once per process; collective on the first call.
int select_nccl_device();

}  // namespace ms
#endif
