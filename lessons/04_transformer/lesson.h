// Lesson 04: the transformer. You write the backward of the causal softmax, the one
// non-GEMM step of attention's backward, in exercise.cpp; check.cpp grades it and then
// counts GPT's parameters, FLOPs and activation memory.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tensor/error.h"

// The forward, given: P = causal_softmax(S) for one (T, T) score matrix, row-major.
// Row t is a softmax over columns s <= t (the keys token t may see); entries s > t are
// masked (as if S were -inf there) and P is exactly 0 there.
inline void causal_softmax_forward(const double* S, double* P, int64_t T) {
  for (int64_t t = 0; t < T; ++t) {
    const double* srow = S + t * T;
    double* prow = P + t * T;
    double m = srow[0];
    for (int64_t s = 1; s <= t; ++s) m = std::max(m, srow[s]);  // subtract the max: no overflow
    double sum = 0;
    for (int64_t s = 0; s <= t; ++s) sum += prow[s] = std::exp(srow[s] - m);
    for (int64_t s = 0; s <= t; ++s) prow[s] /= sum;
    for (int64_t s = t + 1; s < T; ++s) prow[s] = 0;
  }
}

// The backward, yours: given P (the forward's output) and dP = dL/dP, write dS = dL/dS,
// all (T, T) row-major. dP may hold anything above the diagonal (attention's dP = dO·Vᵀ is
// dense); dS must be exactly 0 there. Write every entry of dS: the checker fills it with
// NaN first.
void causal_softmax_backward(const double* P, const double* dP, double* dS, int64_t T);
