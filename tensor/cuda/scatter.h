// The backward of max on the GPU: the twin of tensor/cpu/scatter.h, with the
// stream last and explicit.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// grad_in (outer, R, inner) is zero except grad_in[o, argmax[o, i], i] = grad_out[o, i].
template <typename T>
void argmax_scatter(T* grad_in, const T* grad_out, const int32_t* argmax, int64_t outer, int64_t R,
                    int64_t inner, cudaStream_t stream);

}  // namespace ms::cuda
