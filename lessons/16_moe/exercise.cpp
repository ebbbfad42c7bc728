// Lesson 16 exercise: write the top-k gate, then run `make lesson L=16 TRY=1`.
// lesson.h has the full contract; README question 2 walks through an example by hand.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "lessons/16_moe/lesson.h"
#include "tensor/error.h"

GateAssignment my_top_k_gate(const std::vector<double>& gates, int64_t S, int64_t E, int64_t k,
                             double capacity_factor, int64_t min_capacity) {
  GateAssignment a;
  // TODO 1: a.capacity, DeepSpeed's _capacity (in f32, then the ceiling, then min_capacity).
  // TODO 2: a.expert: each token's choice 0 (argmax) and, for k = 2, choice 1 (argmax of the rest).
  // TODO 3: a.slot: position order per expert; second choices after all first choices; a slot
  //         >= capacity is dropped (-1).
  // TODO 4: a.weight: top-1 the raw gate; top-2 renormalized over the kept choices; 0 if dropped.
  (void)gates, (void)S, (void)E, (void)k, (void)capacity_factor, (void)min_capacity;
  throw ms::Error("TODO: write my_top_k_gate in lessons/16_moe/exercise.cpp");
  return a;
}
