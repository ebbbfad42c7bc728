// expect: backwards in the wrong order
// Lesson 09, deliberately wrong: the steady state backwards the micro-batch it just forwarded (newest first), the warm-up's at the end.
#include <algorithm>

#include "lessons/09_pipeline_parallel/lesson.h"

ms::pp::ComputeOrder my_one_f_one_b_order(int p, int m) {
  ms::pp::ComputeOrder order(p);
  for (int r = 0; r < p; ++r) {
    // Stage r's first gradient comes back after micro-batch 0 has gone through
    // the p − r − 1 stages after it: fill that time with forwards.
    const int warmup = std::min(p - r - 1, m);
    int f = 0, b = 0;  // next forward, next (oldest) backward
    for (; f < warmup; ++f) order[r].push_back({false, f});
    for (; f < m; ++f, ++b) {  // one forward, one backward: p − r in flight at most
      order[r].push_back({false, f});
      order[r].push_back({true, f});
    }
    for (b = 0; b < warmup; ++b) order[r].push_back({true, b});  // cool-down: drain the pipe
  }
  return order;
}
