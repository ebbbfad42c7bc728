// How a tensor's value lives across a process group: replicated (every rank
// holds the whole value), sharded(dim) (rank r holds block r of `dim`) or
// partial(sum) (the value is the SUM of what the ranks hold; a reduction is
// still owed). PyTorch DTensor's Replicate / Shard(dim) / Partial("sum"),
// recorded per mesh axis on the tensor itself (docs/architecture.md,
// "Placements").
//
// Why: the bugs that survive one-mode testing are reductions done twice or
// not at all where parallelisms combine. A placement turns such a bug into an
// ms::Error that names the tensor, its placement and the op, instead of a
// loss that is slightly off. The op that produces a tensor at a parallel
// boundary sets its placement (a row-parallel linear's output is partial over
// tp; the all-reduce after it makes it replicated); elementwise ops combine
// their inputs' placements by the rules of `combine_*` below; consumers check
// (an optimizer step refuses a partial gradient, an all-reduce refuses a
// replicated tensor).
//
// A tensor no parallel code touched has every axis Unknown, and Unknown
// combines with anything without an error: one-process runs carry no
// placements and pay one branch per elementwise op. MS_PLACEMENT_CHECKS=0
// turns every set and check off (to measure their cost).
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace ms {

class Tensor;

// The groups a placement is relative to, one per Mesh group that reduces or
// shards something (parallel/mesh.h).
enum class MeshAxis : uint8_t {
  TP,         // tensor (and sequence) parallel group
  CP,         // context parallel group
  DP,         // data parallel group (dp×cp when cp > 1: gradients average over both)
  EP,         // expert parallel group: which experts a rank holds
  ExpertDP,   // ranks holding the same experts: where expert gradients average
  Embedding,  // the first and last pipeline stage, which both hold the tied wte
};
constexpr int kMeshAxes = 6;
const char* axis_name(MeshAxis axis);  // "tp", "cp", "dp", "ep", "expert-dp", "embedding group"

struct Placement {
  enum class Kind : uint8_t { Unknown, Replicated, Sharded, Partial };
  Kind kind = Kind::Unknown;
  // Sharded only: the dim counted from the END of the shape (-1 = last), so
  // that broadcasting lines a (C) bias up with the C of a (B, T, C) tensor.
  int8_t dim_from_end = 0;

  static Placement unknown() { return {}; }
  static Placement replicated() { return {Kind::Replicated, 0}; }
  static Placement partial() { return {Kind::Partial, 0}; }
  // `dim` may be negative; `ndim` is the rank of the tensor it describes.
  static Placement sharded(int64_t dim, int64_t ndim);

  bool is(Kind k) const { return kind == k; }
  bool operator==(const Placement&) const = default;
};

// "replicated", "partial(sum)", "sharded(dim 1)" (dim counted from the front
// of an `ndim`-D tensor), "unknown".
std::string placement_str(Placement p, int64_t ndim);

struct Placements {
  std::array<Placement, kMeshAxes> on{};
  // What the tensor is, for errors: a parameter's name, "row_parallel_linear
  // output", "gradient of h.0.ln_1.weight". Empty: "a tensor of shape (...)".
  std::string label;
  bool any() const {
    for (const Placement& p : on)
      if (p.kind != Placement::Kind::Unknown) return true;
    return false;
  }
};

// False when MS_PLACEMENT_CHECKS=0 (read once).
bool placement_checks_enabled();

Placement placement_of(const Tensor& t, MeshAxis axis);
// Sets one axis (and the label when `label` is non-empty). No-op when checks
// are off. The tensor's other axes are kept.
void set_placement(const Tensor& t, MeshAxis axis, Placement p, const std::string& label = {});
void set_label(const Tensor& t, const std::string& label);
// Copies every axis and the label from `from` (a view or a detached copy of it).
void copy_placements(const Tensor& to, const Tensor& from);
// "'h.0.attn.c_proj output' (2, 8, 32) [tp: partial(sum)]"
std::string describe_placement(const Tensor& t);

// Raises an ms::Error when `t` is `bad` on `axis`:
//   "<op>: <describe t> is <bad> over <axis>; <why>"
void refuse_placement(const Tensor& t, MeshAxis axis, Placement::Kind bad, const char* op,
                      const char* why);

// ---- elementwise rules ----
// Each returns the placements of `op`'s output (its label: "output of <op>")
// or raises an ms::Error naming the op, both tensors and their placements.
//
// Sum (add, sub), per axis, Unknown on one side taking the other's:
//   R+R=R  P+P=P  S(d)+S(d)=S(d)  S(d)+R=S(d) if R is broadcast along d
//   P+R: error: after the all-reduce the replicated side counts group-size times
//   P+S, S(d)+S(e), S(d)+R (R not broadcast along d): error
Placements combine_sum(const char* op, const Tensor& a, const Tensor& b);
// Product (mul; div with b the divisor): linear in each factor, so one factor
// may be partial if the other is replicated; P·P and a partial divisor are errors.
Placements combine_product(const char* op, const Tensor& a, const Tensor& b, bool b_is_divisor);
// Linear in x (scale, neg, dropout): every axis kept. Views (reshape, permute,
// narrow) do not call this: they start unknown, and the op that knows the
// layout sets it again.
Placements keep_linear(const char* op, const Tensor& x);
// Nonlinear in x (gelu, exp, layernorm, softmax, cross-entropy): a partial
// input is an error (the reduction must come first); other axes kept.
Placements keep_nonlinear(const char* op, const Tensor& x);
// Nonlinear and reducing along `dim` (layernorm over the last dim, softmax,
// cross-entropy over classes): as keep_nonlinear, and a shard along `dim` is
// an error too (each rank would normalize over its block only).
Placements keep_rowwise(const char* op, const Tensor& x, int64_t dim);
// Gives `out` the placements `p` (no-op when p has none) and returns it.
const Tensor& with_placements(const Tensor& out, const Placements& p);

// ---- planted bugs (tests and lesson 17 only) ----
// Each names a classic silent bug that the code can be told to commit, so a
// test can see the named error it causes (tests/test_placement.cpp,
// tests/mpi/test_placement_*.cpp). Set from a test, or with
// MS_PLANT_BUG=<name> for a whole run; None in every normal run.
enum class PlantedBug : uint8_t {
  None,
  SkipRowParallelAllReduce,  // row-parallel output goes on without g's all-reduce
  AverageGradientTwice,      // the data-parallel gradient reduction runs twice
  SkipTiedEmbeddingSum,      // the first/last stage wte gradient sum is skipped
  SkipExpertGradientReduce,  // expert gradients skip the expert-dp reduction
  SaveShardAsWhole,          // a consolidated save writes a rank's shard
};
PlantedBug planted_bug();
void plant_bug(PlantedBug bug);
const char* planted_bug_name(PlantedBug bug);  // "skip-row-parallel-all-reduce", ...

}  // namespace ms
