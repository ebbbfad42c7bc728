// expect: dropped the wrong tokens: you kept each expert's LATEST tokens
// Lesson 16, deliberately wrong: fills the slots from the last token back, so the earliest tokens drop.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "lessons/16_moe/lesson.h"

GateAssignment my_top_k_gate(const std::vector<double>& gates, int64_t S, int64_t E, int64_t k,
                             double capacity_factor, int64_t min_capacity) {
  GateAssignment a;
  const float per_expert = static_cast<float>(static_cast<double>(S) / static_cast<double>(E));
  const float factor = static_cast<float>(capacity_factor * static_cast<double>(k));
  a.capacity = std::max(static_cast<int64_t>(std::ceil(per_expert * factor)), min_capacity);
  a.expert.assign(size_t(S * k), -1);
  a.slot.assign(size_t(S * k), -1);
  a.weight.assign(size_t(S * k), 0.0);
  std::vector<int64_t> first_count(size_t(E), 0);
  for (int64_t s = 0; s < S; ++s) {
    const double* g = &gates[size_t(s * E)];
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if ((j == 0 || e != a.expert[size_t(s * k)]) && (best < 0 || g[e] > g[best])) best = e;
      a.expert[size_t(s * k + j)] = static_cast<int32_t>(best);
    }
    ++first_count[size_t(a.expert[size_t(s * k)])];
  }
  for (int64_t j = 0; j < k; ++j) {
    std::vector<int64_t> next(size_t(E), 0);
    if (j == 1) next = first_count;
    for (int64_t s = S - 1; s >= 0; --s) {
      const int64_t location = next[size_t(a.expert[size_t(s * k + j)])]++;
      if (location < a.capacity) a.slot[size_t(s * k + j)] = static_cast<int32_t>(location);
    }
  }
  for (int64_t s = 0; s < S; ++s) {
    double kept = 0;
    for (int64_t j = 0; j < k; ++j)
      if (a.slot[size_t(s * k + j)] >= 0) {
        a.weight[size_t(s * k + j)] = gates[size_t(s * E + a.expert[size_t(s * k + j)])];
        kept += a.weight[size_t(s * k + j)];
      }
    if (k == 2)
      for (int64_t j = 0; j < k; ++j) a.weight[size_t(s * k + j)] /= std::max(kept, DBL_EPSILON);
  }
  return a;
}
