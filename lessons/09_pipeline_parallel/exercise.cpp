// Lesson 09 exercise: write the 1F1B schedule, then run `make lesson L=09 TRY=1`
// (one process: the library simulates your schedule for p = 1, 2, 4 stages).
//
// Tools (parallel/pp/schedule.h):
//   ms::pp::ComputeOrder order(p);     one empty list per stage
//   order[r].push_back({false, k});    stage r forwards micro-batch k
//   order[r].push_back({true, k});     stage r backwards micro-batch k
//   std::min (<algorithm>)
#include "lessons/09_pipeline_parallel/lesson.h"
#include "tensor/error.h"

ms::pp::ComputeOrder my_one_f_one_b_order(int p, int m) {
  // TODO: for each stage r, its warm-up forwards (how many? lesson.h), then
  //       one forward and one backward (which micro-batch's backward?) while
  //       forwards remain, then the remaining backwards.
  (void)p, (void)m;
  throw ms::Error("TODO: write my_one_f_one_b_order in lessons/09_pipeline_parallel/exercise.cpp");
}
