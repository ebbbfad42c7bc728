// Embedding lookup and its scatter-add backward on the GPU: the twin of
// tensor/cpu/embedding.h with device pointers, plus the stream as the last
// argument (stream.h). T is float or double.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// out (N, C) = weight[idx[n]] for weight (V, C); idx (N) already range-checked
// (on the host, before the copy: a device-side check could only trap).
template <typename T>
void embedding_forward(T* out, const T* weight, const int32_t* idx, int64_t N, int64_t C,
                       cudaStream_t stream);
// dweight (V, C) += scatter of dout (N, C) by idx (N). Rows that share a token
// meet in atomicAdd, so the f32 sum order (and its last bits) varies run to run.
template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* idx, int64_t N, int64_t C,
                        cudaStream_t stream);

}  // namespace ms::cuda
