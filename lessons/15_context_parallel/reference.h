// Lesson 15's reference attention, computed directly: one softmax over every
// key a query may see, no blocks, no merge — what the learner's merges must
// reproduce. Also the seeded activations every rank builds identically.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "lessons/15_context_parallel/lesson.h"

namespace lesson15 {

// Deterministic values in [-scale, scale), rounded to f32 (what travels on
// the wire is f32, so every rank's doubles are the same numbers).
inline std::vector<double> seeded(int64_t n, uint64_t seed, double scale) {
  std::vector<double> v(static_cast<size_t>(n));
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = double(s >> 11) / double(1ull << 53);  // [0, 1)
    x = double(float(scale * (2 * u - 1)));
  }
  return v;
}

// Attention of nq queries over nk keys, for every batch row b and head h.
// q (B, nq, C), k and v (B, nk, C), C = heads·dim, heads side by side in C
// (GPT-2's layout after c_attn's split). visible(i, j): may query i see key j.
// Rows of the result are ordered (b, h, i): row (b·heads + h)·nq + i.
inline Partial attend(const std::vector<double>& q, int64_t nq, const std::vector<double>& k,
                      const std::vector<double>& v, int64_t nk, int64_t batch, int64_t heads,
                      int64_t dim, const std::function<bool(int64_t, int64_t)>& visible) {
  const int64_t C = heads * dim;
  Partial p = empty_partial(batch * heads * nq, dim);
  const double scale = 1.0 / std::sqrt(double(dim));
  std::vector<double> s(static_cast<size_t>(nk));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t row = (b * heads + h) * nq + i;
        double hi = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < nk; ++j) {
          s[j] = -std::numeric_limits<double>::infinity();
          if (!visible(i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < dim; ++d)
            dot += q[(b * nq + i) * C + h * dim + d] * k[(b * nk + j) * C + h * dim + d];
          s[j] = dot * scale;
          hi = std::max(hi, s[j]);
        }
        if (std::isinf(hi)) continue;  // no visible key: (0, −inf), the empty partial
        double z = 0;
        for (int64_t j = 0; j < nk; ++j) z += std::exp(s[j] - hi);
        const double lse = hi + std::log(z);
        p.lse[row] = lse;
        for (int64_t j = 0; j < nk; ++j) {
          const double w = std::exp(s[j] - lse);
          if (w == 0) continue;
          for (int64_t d = 0; d < dim; ++d)
            p.out[row * dim + d] += w * v[(b * nk + j) * C + h * dim + d];
        }
      }
  return p;
}

// Positions [start, start + n) of x (B, T, C): a (B, n, C) buffer.
inline std::vector<double> positions(const std::vector<double>& x, int64_t batch, int64_t T,
                                     int64_t C, int64_t start, int64_t n) {
  std::vector<double> y(static_cast<size_t>(batch * n * C));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < C; ++c) y[(b * n + i) * C + c] = x[(b * T + start + i) * C + c];
  return y;
}

// max |a − b| over out and lse; −inf == −inf counts as equal; infinity when a
// NaN appears or the shapes differ.
inline double partial_diff(const Partial& a, const Partial& b) {
  if (a.rows != b.rows || a.dim != b.dim || a.out.size() != b.out.size() ||
      a.lse.size() != b.lse.size())
    return std::numeric_limits<double>::infinity();
  double m = 0;
  auto cmp = [&m](double x, double y) {
    if (std::isnan(x) || std::isnan(y))
      m = std::numeric_limits<double>::infinity();
    else if (x != y)
      m = std::max(m, std::fabs(x - y));  // x == y covers −inf == −inf
  };
  for (size_t i = 0; i < a.out.size(); ++i) cmp(a.out[i], b.out[i]);
  for (size_t i = 0; i < a.lse.size(); ++i) cmp(a.lse[i], b.lse[i]);
  return m;
}

}  // namespace lesson15
