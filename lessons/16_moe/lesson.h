// Lesson 16: mixture of experts. You write the top-k gate with capacity in exercise.cpp: which
// expert and which capacity slot each token's choices take, and the weights that combine the
// experts' outputs. check.cpp grades it against minispeed's gate (autograd/ops_moe.h, DeepSpeed's
// TopKGate semantics) on hand-made and random cases and names the likely bug.
#pragma once
#include <cstdint>
#include <vector>

struct GateAssignment {
  int64_t capacity = 0;         // slots per expert
  std::vector<int32_t> expert;  // (S, k) row-major: expert of token s's choice j at [s·k + j]
  std::vector<int32_t> slot;    // (S, k): the capacity slot in [0, capacity), -1 = dropped
  std::vector<double> weight;   // (S, k): the combine weight, 0 for a dropped choice
};

// gates: (S, E) row-major softmax probabilities (each row sums to 1). k is 1 or 2.
//   capacity  = max(ceil(k · S / E · capacity_factor), min_capacity), with the product computed
//               in f32 as DeepSpeed's _capacity does (float(S / E) · float(capacity_factor · k))
//   choice 0  = the largest gate; choice 1 (k = 2) = the largest of the others; ties go to the
//               lower expert index (torch.argmax)
//   slots     = in position order: token 0's first choice first; an expert's second choices
//               queue after ALL of its first choices (DeepSpeed's `locations2 += sum(mask1)`);
//               a choice whose slot would be >= capacity is dropped (slot -1)
//   weights   = top-1: the raw gate of the kept choice; top-2: the kept gates renormalized over
//               the token's kept choices, g / max(sum of kept gates, DBL_EPSILON); 0 if dropped
GateAssignment my_top_k_gate(const std::vector<double>& gates, int64_t S, int64_t E, int64_t k,
                             double capacity_factor, int64_t min_capacity);
