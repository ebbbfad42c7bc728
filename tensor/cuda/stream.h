// cudaStream_t without the CUDA headers, so the dispatch in autograd/ (built by
// g++) can include the kernel headers. The typedef is the one driver_types.h
// declares; C++ allows repeating an identical typedef.
#pragma once

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
