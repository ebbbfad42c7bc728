// Lesson 04 reference solution.
#include "lessons/04_transformer/lesson.h"

void causal_softmax_backward(const double* P, const double* dP, double* dS, int64_t T) {
  for (int64_t t = 0; t < T; ++t) {
    const double* p = P + t * T;
    const double* dp = dP + t * T;
    double* ds = dS + t * T;
    // Softmax's Jacobian is diag(p) - p·pᵀ, so dS = p ∘ (dp − <dp, p>): one dot product per
    // row, never the T×T Jacobian. Only the visible columns s <= t take part.
    double dot = 0;
    for (int64_t s = 0; s <= t; ++s) dot += dp[s] * p[s];
    for (int64_t s = 0; s <= t; ++s) ds[s] = p[s] * (dp[s] - dot);
    for (int64_t s = t + 1; s < T; ++s) ds[s] = 0;  // masked scores never reach the loss
  }
}
