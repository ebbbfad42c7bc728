// Device tensors through a backend that cannot move them: a host copy.
//
// The MPI backend moves host memory only. A tensor on another device (Sim,
// or CUDA when MS_BACKEND=mpi; the NCCL backend moves CUDA tensors itself)
// is staged: copied to the CPU (to(Device::CPU)), handed to MPI there, and —
// for the ops that write it — copied back into the device tensor when the op
// completes. That is what torch.distributed's gloo backend does with CUDA
// tensors, and what MPI without CUDA-awareness needs. It costs a D2H and an
// H2D copy of the payload per op; the ledger counts the same payload bytes as
// for a CPU tensor (the wire carries exactly those), not the staging copies.
#pragma once
#include "parallel/comm/communicator.h"

namespace ms::comm_detail {

// True when `t` lives on a device `backend` does not move itself.
bool needs_staging(const Tensor& t, const Backend& backend);
// Writes a host tensor's bytes into a device tensor of the same size (the
// device's own copy: a memcpy on Sim, cudaMemcpy H2D on CUDA).
void copy_host_into_device(const Tensor& device_dst, const Tensor& host_src);
// Copies n bytes within one device (copy_alone of a one-rank group).
void copy_on_device(const Tensor& dst, const Tensor& src);
// `inner` runs on `host`; once it has completed, `host` is copied back into
// `device_dst` (before wait() returns, or when test() first sees it done).
Work copy_back_when_done(Work inner, Tensor host, Tensor device_dst);
// Keeps `host` alive until `inner` has completed (a staged send).
Work keep_until_done(Work inner, Tensor host);

}  // namespace ms::comm_detail
