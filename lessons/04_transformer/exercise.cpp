// Lesson 04 exercise: replace the TODO, then run `make lesson L=04 TRY=1`.
#include "lessons/04_transformer/lesson.h"

void causal_softmax_backward(const double* P, const double* dP, double* dS, int64_t T) {
  // TODO: for every row t, the softmax over columns s <= t gives (README question 2)
  //   dS[t][s] = P[t][s] * (dP[t][s] - sum_{s' <= t} dP[t][s'] * P[t][s'])   for s <= t
  //   dS[t][s] = 0                                                            for s > t
  // Element [t][s] lives at index t * T + s.
  (void)P, (void)dP, (void)dS, (void)T;  // delete this line once you use them
  throw ms::Error("TODO: write causal_softmax_backward in lessons/04_transformer/exercise.cpp");
}
