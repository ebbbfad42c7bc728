// Lesson 17 grader (2 ranks): the learner's tp_placement against placements
// MEASURED on a real run, not against a table of answers.
//
// One GPT-2 block runs on one process and at tp 2 with sequence parallelism
// on the same weights and input (block_runs.h, f64). For every tensor of
// lesson.h both ranks' values are all-gathered and set beside one process's:
//   equal on both ranks, and equal to one process             -> replicated
//   different, and their SUM equals one process               -> partial(sum)
//   rank 0's and rank 1's blocks laid end to end along dim d
//   equal one process                                          -> sharded(dim d)
// "Equal" is within 1e-10 · max(1, max |one process|): both runs are f64 and
// add the same terms in other orders, so they differ by ~1e-15; a wrong
// placement misses by O(1). Rank 0 prints the table; the first tensor (in
// block order) the learner placed wrongly is the verdict, with what was
// measured and the likely misconception behind the answer.
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "lessons/17_testing_parallelism/block_runs.h"
#include "lessons/17_testing_parallelism/hints.h"
#include "lessons/17_testing_parallelism/lesson.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using lesson::agree;
using namespace lesson17;

namespace {

constexpr double kTimeout = 30;
constexpr double kRelTol = 1e-10;

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
  return m;
}
double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::fmax(m, std::fabs(x));
  return m;
}
std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1e", x);
  return buf;
}

struct Measured {
  bool found = false;
  Placement placement;
  std::string evidence;  // what the numbers showed
};

// Collective over `tp` (2 ranks): classifies this tensor from both ranks'
// values and one process's. Every rank computes the same answer.
Measured measure(const Tensor& mine, const Tensor& one, Communicator& tp) {
  const Tensor flat = clone(contiguous(to(detach(mine), DType::F64)));
  Tensor both = zeros({2 * flat.numel()}, DType::F64);
  tp.all_gather(flat, both);
  const std::vector<double> all = both.to_vector(), ref = contiguous(detach(one)).to_vector();
  const std::vector<double> r0(all.begin(), all.begin() + flat.numel()),
      r1(all.begin() + flat.numel(), all.end());
  const double tol = kRelTol * std::fmax(1.0, max_abs(ref));
  const Shape& s = mine.shape();
  const Shape& full = one.shape();
  const std::string held = str_cat("rank 0 and rank 1 hold ");
  Measured m;
  if (s == full) {
    const double rep = std::fmax(max_abs_diff(r0, ref), max_abs_diff(r1, ref));
    std::vector<double> total(r0.size());
    for (size_t i = 0; i < r0.size(); ++i) total[i] = r0[i] + r1[i];
    const double sum = max_abs_diff(total, ref);
    if (rep <= tol) {
      m = {true, Placement::replicated(),
           str_cat(held, "the same ", shape_str(s), " tensor, equal to one process's (max |diff| ",
                   num(rep), ")")};
    } else if (sum <= tol) {
      m = {true, Placement::partial(),
           str_cat(held, "different ", shape_str(s), " tensors (apart by up to ",
                   num(max_abs_diff(r0, r1)), ") whose SUM equals one process's (max |diff| ",
                   num(sum), ")")};
    }
    return m;
  }
  for (int64_t d = 0; d < int64_t(s.size()) && s.size() == full.size(); ++d) {
    Shape doubled = s;
    doubled[d] *= 2;
    if (doubled != full) continue;
    const Tensor joined = cat({from_vector(r0, s, DType::F64), from_vector(r1, s, DType::F64)}, d);
    const double diff = max_abs_diff(joined.to_vector(), ref);
    if (diff <= tol)
      m = {true, Placement::sharded(d, int64_t(s.size())),
           str_cat(held, shape_str(s), " blocks that, laid end to end along dim ", d,
                   ", equal one process's ", shape_str(full), " (max |diff| ", num(diff), ")")};
  }
  return m;
}

std::string guarded_placement(BlockTensor which, Placement& out) {
  try {
    out = tp_placement(which);
  } catch (const std::exception& e) {
    return str_cat("your code threw: ", e.what());
  }
  return "";
}

// The placement rules of tensor/placement.h applied to the learner's answer:
// the block's elementwise ops, on stand-in tensors of one process's shapes
// that carry the learner's placements over tp. The rules derive what each
// op's output must be, or refuse with the error the framework raises when a
// reduction is missing (docs/architecture.md, "Placements"). Printed for the
// learner; the verdict is the measurement above.
void print_rules_on(const std::map<BlockTensor, Placement>& said, const Tensors& one) {
  auto stand_in = [&](BlockTensor b) {
    Tensor t = zeros(one.at(b).shape(), DType::F64);
    if (!said.at(b).is(Placement::Kind::Unknown))
      set_placement(t, MeshAxis::TP, said.at(b), tensor_name(b));
    return t;
  };
  struct Rule {
    const char* op;
    BlockTensor a, b, out;
    bool binary;
  };
  const Rule rules[] = {
      {"layernorm", BlockTensor::Input, BlockTensor::Input, BlockTensor::Ln1Out, false},
      {"add", BlockTensor::Input, BlockTensor::AttnProjReduced, BlockTensor::Residual1, true},
      {"gelu", BlockTensor::FcOut, BlockTensor::FcOut, BlockTensor::GeluOut, false},
      {"add", BlockTensor::Residual1, BlockTensor::MlpProjReduced, BlockTensor::Output, true},
  };
  std::printf("the placement rules (tensor/placement.h) on your answer:\n");
  for (const Rule& r : rules) {
    const std::string call = r.binary
                                 ? str_cat(r.op, "(", tensor_name(r.a), ", ", tensor_name(r.b), ")")
                                 : str_cat(r.op, "(", tensor_name(r.a), ")");
    const int64_t nd = one.at(r.out).dim();
    try {
      const Tensor a = stand_in(r.a), b = stand_in(r.b);
      const Placements p = !r.binary ? (std::string(r.op) == "gelu" ? keep_nonlinear(r.op, a)
                                                                    : keep_rowwise(r.op, a, -1))
                                     : combine_sum(r.op, a, b);
      const Placement got = p.on[int(MeshAxis::TP)];
      std::printf("  %s -> %s%s\n", call.c_str(), placement_str(got, nd).c_str(),
                  got == said.at(r.out) || got.is(Placement::Kind::Unknown)
                      ? ""
                      : str_cat(", but you said ", tensor_name(r.out), " is ",
                                placement_str(said.at(r.out), nd))
                            .c_str());
    } catch (const Error& e) {
      std::printf("  %s -> ms::Error: %s\n", call.c_str(), e.what());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return lesson::run_ranks(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    MS_CHECK(world.size() == 2, "lesson 17 runs on 2 ranks (mpirun -np 2), got ", world.size());
    const Weights w = make_weights();
    Tensors one = run_one_process(w);
    Tensors mine = run_tp_sp(w, world);
    // One process's q|k|v columns in the ranks' order (lesson.h).
    for (BlockTensor b : {BlockTensor::CAttnOut, BlockTensor::CAttnWeight, BlockTensor::CAttnBias,
                          BlockTensor::CAttnWeightGrad})
      one[b] = qkv_by_heads(detach(one[b]), world.size());
    const bool r0 = world.rank() == 0;
    if (r0)
      std::printf(
          "one GPT-2 block (B %lld, T %lld, C %lld, %lld heads), f64, on one process and "
          "at tp 2 + sequence parallelism;\neach tensor's placement over tp measured from "
          "both ranks' values:\n",
          (long long)B, (long long)T, (long long)C, (long long)H);
    std::string why;
    int wrong = 0;
    std::map<BlockTensor, Placement> said_all;
    for (int i = 0; i < kBlockTensors; ++i) {
      const auto which = BlockTensor(i);
      const Measured m = measure(mine.at(which), one.at(which), world);
      const int64_t nd = one.at(which).dim();
      MS_CHECK(m.found, "lesson 17 checker: ", tensor_name(which),
               " matches no placement (a bug in block_runs.h)");
      Placement said;
      const std::string threw = guarded_placement(which, said);
      if (!threw.empty()) {
        why = threw;
        break;
      }
      said_all[which] = said;
      const bool ok = said == m.placement;
      if (r0)
        std::printf("  %-44s %-10s measured %-16s you said %s%s\n", tensor_name(which),
                    shape_str(mine.at(which).shape()).c_str(),
                    placement_str(m.placement, nd).c_str(), placement_str(said, nd).c_str(),
                    ok ? "" : "   <- wrong");
      if (!ok && wrong++ == 0)
        why = str_cat(tensor_name(which), ": ", m.evidence, ": ", placement_str(m.placement, nd),
                      "; you said ", placement_str(said, nd), ".\n  ", hint(which, said));
    }
    // Unless tp_placement threw (and the loop stopped early).
    if (r0 && int(said_all.size()) == kBlockTensors) print_rules_on(said_all, one);
    if (wrong > 1)
      why += str_cat("\n  (", wrong, " tensors placed wrongly; this is the first in block order)");
    std::fflush(stdout);
    const bool ok = agree(world, why,
                          "tp_placement: the placement over tp of every tensor of one block at "
                          "tp 2 + sequence parallelism, as measured");
    return lesson::finish(world, ok);
  });
}
