// The CUDA runtime as the rest of minispeed sees it: which devices exist, the
// current one, one stream per device, and error checking. Included only in a
// CUDA build (MS_CUDA); a CPU build never sees a CUDA header.
//
// One main stream per device, as llm.c's main_stream: every kernel, copy,
// memset and scratch block of that device is ordered on it, so a block the
// caching allocator hands out again is never still in use by earlier work
// (PyTorch needs record_stream() only because it has many streams). NCCL runs
// on a stream of its own, ordered against this one by events
// (parallel/comm/nccl_backend.cpp). The rule: docs/architecture.md, "Streams".
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "tensor/cuda/stream.h"  // current_stream()

namespace ms::cuda {

// Turns a failed CUDA call into an ms::Error naming the call, the code and
// the runtime's message (e.g. "cudaMalloc(1073741824 bytes): cudaErrorMemoryAllocation ...").
void check(cudaError_t err, const char* call, const char* file, int line);

// Number of usable devices; 0 when there is no driver or no GPU (the runtime's
// error is swallowed here on purpose: "no GPU" is a normal answer).
int device_count();
// The calling thread's device; throws an ms::Error when there is none.
int current_device();
// Makes `device` current, checking it against device_count().
void set_device(int device);
// The device's main stream (created on first use, never destroyed: kernels
// may still run at exit). current_stream() (stream.h) is stream(current_device()).
cudaStream_t stream(int device);
// Waits for all work queued on the device's stream.
void synchronize(int device);

// Copies on the device's stream, then waits (the host side must see the
// bytes, or may reuse its buffer, when these return).
void copy_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_to_host(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device);
// Asynchronous on the device's stream: stream order makes later kernels see zeros.
void memset_zero(void* dst, size_t nbytes, int device);

}  // namespace ms::cuda

// Wraps a CUDA runtime call: MS_CUDA_CHECK(cudaMalloc(&p, n)).
#define MS_CUDA_CHECK(call) ::ms::cuda::check((call), #call, __FILE__, __LINE__)
