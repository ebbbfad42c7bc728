// Reductions over the middle axis of a contiguous (outer, R, inner) block on
// the GPU: the twin of tensor/cpu/reductions.h with device pointers, the
// stream as the last argument (stream.h). Sums accumulate in double, as the CPU's.
#pragma once
#include <cstdint>

#include "tensor/cuda/stream.h"

namespace ms::cuda {

// out (outer, inner) = Σ_r in (outer, R, inner)
template <typename T>
void reduce_sum(const T* in, T* out, int64_t outer, int64_t R, int64_t inner, cudaStream_t stream);

// Max and the index (0..R-1) of its first occurrence; NaN propagates (the
// first NaN wins, as on the CPU).
template <typename T>
void reduce_max(const T* in, T* out, int32_t* argmax, int64_t outer, int64_t R, int64_t inner,
                cudaStream_t stream);

// Σ x[i]² over n contiguous device floats, in double (the global gradient norm
// for clipping). Returns the value on the host, so it waits for the stream.
double sum_squares(const float* x, int64_t n, cudaStream_t stream);

}  // namespace ms::cuda
