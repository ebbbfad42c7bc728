// cudaStream_t without the CUDA headers, so the dispatch in autograd/ (built by
// g++) can include the kernel headers and pass the stream. The typedef is the
// one driver_types.h declares; C++ allows repeating an identical typedef.
//
// The stream rule (docs/architecture.md, "Streams"): every launcher in
// tensor/cuda/ takes the stream as its last argument, with no default, and the
// caller passes current_stream() — the device's one main stream. Nothing runs
// on the legacy default stream (stream 0).
#pragma once

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace ms::cuda {

// The main stream of the calling thread's current device (created on first
// use). An ms::Error when no CUDA device is visible.
cudaStream_t current_stream();

}  // namespace ms::cuda
