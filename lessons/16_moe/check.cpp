// Lesson 16 grader: my_top_k_gate against minispeed's gate (autograd/ops_moe.h: moe_capacity,
// moe_route, moe_gate_weights, DeepSpeed's TopKGate definitions). First the capacity on cases
// chosen to separate the usual roundings, then the assignment and weights on hand-made and
// random cases, top-1 and top-2, with drops. On a mismatch it recomputes the common wrong
// answers and names the one the learner's output matches:
//   capacity: rounded down, one slot too many, computed in f64, min_capacity or k forgotten
//   drops:    the latest tokens kept, the highest gates kept (drop_policy "probs"), second
//             choices interleaved with first ones
//   weights:  top-1 renormalized, top-2 renormalized before dropping, top-2 not renormalized
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include "autograd/ops_moe.h"
#include "lessons/16_moe/lesson.h"
#include "lessons/lesson_check.h"
#include "tensor/random.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

struct Case {
  std::string name;
  std::vector<double> gates;
  int64_t S, E, k;
  double cf;
  int64_t min_capacity;
};

std::vector<double> softmax_rows(const std::vector<double>& scores, int64_t S, int64_t E) {
  return softmax(from_vector(scores, {S, E}, DType::F64), -1).to_vector();
}

// Skewed random gates: expert e's scores shifted by bias[e], so some experts overflow.
Case random_case(const std::string& name, int64_t S, int64_t E, int64_t k, double cf,
                 uint64_t seed) {
  Generator gen(seed);
  std::vector<double> scores = randn({S, E}, gen, 0, 1.5, DType::F64).to_vector();
  for (int64_t s = 0; s < S; ++s)
    for (int64_t e = 0; e < E; ++e) scores[size_t(s * E + e)] += 0.8 * double(E - e) / double(E);
  return {name, softmax_rows(scores, S, E), S, E, k, cf, 0};
}

GateAssignment reference(const Case& c) {
  Tensor g = from_vector(c.gates, {c.S, c.E}, DType::F64);
  MoeRouting r = moe_route(g, {.k = c.k, .capacity_factor = c.cf, .min_capacity = c.min_capacity});
  GateAssignment a;
  a.capacity = r.capacity;
  for (double v : r.expert.to_vector()) a.expert.push_back(int32_t(v));
  for (double v : r.slot.to_vector()) a.slot.push_back(int32_t(v));
  a.weight = moe_gate_weights(g, r).to_vector();
  return a;
}

std::string describe(const GateAssignment& a, int64_t E, int64_t k) {
  std::vector<int64_t> placed(size_t(E), 0);
  int64_t dropped = 0;
  for (size_t i = 0; i < a.slot.size(); ++i) {
    if (a.slot[i] < 0) {
      ++dropped;
    } else if (a.expert[i] >= 0 && a.expert[i] < E) {
      ++placed[size_t(a.expert[i])];
    }
  }
  std::string per;
  for (int64_t e = 0; e < E; ++e) per += str_cat(e ? ", " : "", placed[size_t(e)]);
  return str_cat("capacity ", a.capacity, ", placed per expert [", per, "], dropped ", dropped,
                 " of ", a.slot.size(), " choices (k = ", k, ")");
}

// ---- capacity ----
void check_capacity() {
  struct C {
    int64_t S, E, k;
    double cf;
    int64_t min;
  };
  // 10/3 needs the ceiling; k = 2 doubles the slots; 6 tokens on 3 experts is below
  // min_capacity 4; last, 25/2 · 1.2 is 15.000001 in f32 (torch: ceiling 16) but 15.0 in f64.
  for (C c : {C{10, 3, 1, 1.0, 0}, C{10, 3, 2, 1.0, 0}, C{8, 4, 1, 1.25, 0}, C{6, 3, 1, 1.0, 4},
              C{25, 2, 1, 1.2, 0}}) {
    Case cs = random_case("capacity", c.S, c.E, c.k, c.cf, 3);
    cs.min_capacity = c.min;
    const int64_t want =
        moe_capacity(c.S, c.E, {.k = c.k, .capacity_factor = c.cf, .min_capacity = c.min});
    const int64_t got = my_top_k_gate(cs.gates, c.S, c.E, c.k, c.cf, c.min).capacity;
    if (got == want) continue;
    const std::string where =
        str_cat("S = ", c.S, ", E = ", c.E, ", k = ", c.k, ", capacity_factor = ", c.cf,
                ", min_capacity = ", c.min, ": your capacity ", got, ", DeepSpeed's ", want, ". ");
    const float f32 = float(double(c.S) / double(c.E)) * float(c.cf * double(c.k));
    const double f64 = double(c.S) / double(c.E) * c.cf * double(c.k);
    if (got == std::max<int64_t>(int64_t(std::ceil(f64)), c.min))
      fail(where +
           "capacity computed in f64: DeepSpeed's _capacity multiplies float32 tensors "
           "(torch.tensor(capacity_factor)), where 25/2 · 1.2f = 15.000001 and the "
           "ceiling is 16; in f64 12.5 · 1.2 is exactly 15.0");
    if (got == std::max<int64_t>(int64_t(std::floor(f32)), c.min))
      fail(where +
           "capacity off by one: you rounded k·S/E·F down; _capacity takes the ceiling "
           "(torch.ceil), so 10 tokens on 3 experts get 4 slots, not 3");
    if (got == want + 1)
      fail(where +
           "capacity off by one: one slot more than ceil(k·S/E·F) (a +1 after the "
           "ceiling, or the ceiling of a value already whole)");
    if (got == int64_t(std::ceil(f32)))
      fail(where + "min_capacity forgotten: the capacity is at least min_capacity");
    if (got == std::max<int64_t>(int64_t(std::ceil(float(double(c.S) / double(c.E)) * float(c.cf))),
                                 c.min))
      fail(where +
           "the factor k forgotten: top-2 places 2·S choices, so the capacity is "
           "ceil(k·S/E·F)");
    fail(where + "capacity = max(ceil(float(S/E) · float(F·k)), min_capacity)");
  }
  pass("capacity: DeepSpeed's _capacity on 5 cases (f32 rounding, ceiling, min_capacity, k)");
}

// ---- the assignment ----
// The kept set and slots of the common wrong policies, from the right experts and capacity.
enum class Policy { kInterleaved, kLatest, kHighestGate };
std::vector<int32_t> slots_by(Policy p, const Case& c, const GateAssignment& ref) {
  const int64_t S = c.S, k = c.k;
  std::vector<int32_t> slot(size_t(S * k), -1);
  std::vector<int64_t> next(size_t(c.E), 0);
  auto place = [&](int64_t s, int64_t j) {
    const int64_t loc = next[size_t(ref.expert[size_t(s * k + j)])]++;
    if (loc < ref.capacity) slot[size_t(s * k + j)] = int32_t(loc);
  };
  if (p == Policy::kInterleaved) {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < k; ++j) place(s, j);
  } else if (p == Policy::kLatest) {
    for (int64_t j = 0; j < k; ++j)
      for (int64_t s = S - 1; s >= 0; --s) place(s, j);
  } else {
    std::vector<std::pair<double, int64_t>> order;  // (−gate, index)
    for (int64_t i = 0; i < S * k; ++i)
      order.push_back({-c.gates[size_t((i / k) * c.E + ref.expert[size_t(i)])], i});
    std::stable_sort(order.begin(), order.end());
    for (auto [g, i] : order) place(i / k, i % k);
  }
  return slot;
}
std::vector<bool> kept(const std::vector<int32_t>& slot) {
  std::vector<bool> out;
  for (int32_t s : slot) out.push_back(s >= 0);
  return out;
}

std::vector<double> weights_by(const Case& c, const GateAssignment& ref, bool renorm_k1,
                               bool renorm_k2, bool before_drop) {
  std::vector<double> w(size_t(c.S * c.k), 0.0);
  for (int64_t s = 0; s < c.S; ++s) {
    double sum = 0;
    for (int64_t j = 0; j < c.k; ++j) {
      const size_t i = size_t(s * c.k + j);
      const double g = c.gates[size_t(s * c.E + ref.expert[i])];
      sum += before_drop || ref.slot[i] >= 0 ? g : 0.0;
      w[i] = ref.slot[i] >= 0 ? g : 0.0;
    }
    if ((c.k == 1 && renorm_k1) || (c.k == 2 && renorm_k2))
      for (int64_t j = 0; j < c.k; ++j) w[size_t(s * c.k + j)] /= std::max(sum, DBL_EPSILON);
  }
  return w;
}
bool same(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::fabs(a[i] - b[i]) > 1e-12 * (1 + std::fabs(b[i]))) return false;
  return true;
}

void check_case(const Case& c) {
  const GateAssignment want = reference(c);
  const GateAssignment got = my_top_k_gate(c.gates, c.S, c.E, c.k, c.cf, c.min_capacity);
  const std::string where = str_cat(c.name, " (S = ", c.S, ", E = ", c.E, ", k = ", c.k,
                                    ", capacity_factor = ", c.cf, "): ");
  std::cout << "  " << c.name << "\n    yours:     " << describe(got, c.E, c.k)
            << "\n    reference: " << describe(want, c.E, c.k) << "\n";
  const size_t n = size_t(c.S * c.k);
  if (got.expert.size() != n || got.slot.size() != n || got.weight.size() != n)
    fail(where + str_cat("expert, slot and weight must each hold S·k = ", n, " values, got ",
                         got.expert.size(), ", ", got.slot.size(), ", ", got.weight.size()));
  if (got.capacity != want.capacity)
    fail(where + str_cat("capacity ", got.capacity, ", want ", want.capacity));
  for (size_t i = 0; i < n; ++i)
    if (got.expert[i] != want.expert[i])
      fail(where + str_cat("token ", i / size_t(c.k), " choice ", i % size_t(c.k), ": expert ",
                           got.expert[i], ", want ", want.expert[i],
                           " (choice 0 = the largest gate, choice 1 = the largest of the others; "
                           "ties to the lower index)"));
  if (got.slot != want.slot) {
    if (kept(got.slot) == kept(slots_by(Policy::kLatest, c, want)))
      fail(where +
           "dropped the wrong tokens: you kept each expert's LATEST tokens; DeepSpeed "
           "keeps the first `capacity` in position order and drops the rest");
    if (kept(got.slot) == kept(slots_by(Policy::kHighestGate, c, want)))
      fail(where +
           "dropped the wrong tokens: you kept the choices with the highest gates "
           "(DeepSpeed topkgating's drop_policy \"probs\"); top1gating/top2gating, and "
           "this lesson, drop in position order");
    if (got.slot == slots_by(Policy::kInterleaved, c, want))
      fail(where +
           "dropped the wrong tokens: second choices must queue after ALL of the "
           "expert's first choices (DeepSpeed's `locations2 += sum(mask1)`), not "
           "interleaved token by token; a first choice always wins a slot over a second");
    for (size_t i = 0; i < n; ++i)
      if (got.slot[i] != want.slot[i])
        fail(where + str_cat("token ", i / size_t(c.k), " choice ", i % size_t(c.k), " (expert ",
                             want.expert[i], "): slot ", got.slot[i], ", want ", want.slot[i],
                             kept(got.slot) == kept(want.slot)
                                 ? " (the right choices are kept, but slots are numbered in "
                                   "token order per expert, second choices after the first)"
                                 : " (-1 = dropped)"));
  }
  if (!same(got.weight, want.weight)) {
    if (same(got.weight, weights_by(c, want, true, true, false)) && c.k == 1)
      fail(where +
           "wrong renormalization: top-1 combines with the raw gate probability "
           "(top1gating: gates * mask1), not renormalized to 1");
    if (same(got.weight, weights_by(c, want, false, true, true)) && c.k == 2)
      fail(where +
           "wrong renormalization: you renormalized over both choices before dropping; "
           "DeepSpeed renormalizes over the KEPT choices (a token whose second choice "
           "was dropped puts weight 1 on its first)");
    if (same(got.weight, weights_by(c, want, false, false, false)) && c.k == 2)
      fail(where +
           "wrong renormalization: top-2 weights are g_i / (g_1 + g_2) over the kept "
           "choices; yours are the raw gates");
    for (size_t i = 0; i < n; ++i)
      if (std::fabs(got.weight[i] - want.weight[i]) > 1e-12 * (1 + std::fabs(want.weight[i])))
        fail(where + str_cat("token ", i / size_t(c.k), " choice ", i % size_t(c.k), ": weight ",
                             got.weight[i], ", want ", want.weight[i],
                             want.slot[i] < 0 ? " (a dropped choice weighs 0)" : ""));
  }
  pass(where + "assignment and weights match DeepSpeed's gate");
}

}  // namespace

int main() {
  return lesson::run_checks([] {
    check_capacity();
    // README question 2's example: choice 0 per token 0, 0, 0, 1, 2, 0; capacity 2.
    check_case({"top-1 by hand",
                softmax_rows({3, 1, 0, 2, 0, 1, 1, 0, 0, 0, 2, 1, 0, 1, 3, 4, 0, 0}, 6, 3), 6, 3, 1,
                1.0, 0});
    check_case({"top-2 by hand", softmax_rows({2, 0, 1, 0, 3, 0, 0, 1}, 4, 2), 4, 2, 2, 0.5, 0});
    check_case(random_case("top-1, 32 tokens", 32, 4, 1, 1.0, 11));
    check_case(random_case("top-2, 32 tokens", 32, 4, 2, 0.75, 12));
    check_case(random_case("top-2, 48 tokens, 6 experts", 48, 6, 2, 0.9, 13));
    std::cout << "The all-to-all bytes of these buffers are measured by the ledger in a real "
                 "expert-parallel run (README question 4: mpirun -np 2 build/minispeed train "
                 "--moe-experts 4 --ep 2); this checker runs your gate in one process and "
                 "prints no bytes.\n";
  });
}
