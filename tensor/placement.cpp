// Placements and their elementwise rules; see placement.h.
#include "tensor/placement.h"

#include <cstdlib>
#include <cstring>

#include "tensor/error.h"
#include "tensor/tensor.h"

namespace ms {

namespace {

using Kind = Placement::Kind;

const char* kind_str(Kind k) {
  switch (k) {
    case Kind::Unknown:
      return "unknown";
    case Kind::Replicated:
      return "replicated";
    case Kind::Sharded:
      return "sharded";
    case Kind::Partial:
      return "partial(sum)";
  }
  return "?";
}

// Whether `t` (aligned to the end of a broadcast with `dim_from_end`) has size
// 1 there or no such dim: it is then broadcast along the other's shard.
bool broadcast_along(const Tensor& t, int dim_from_end) {
  const int64_t i = t.dim() + dim_from_end;
  return i < 0 || t.shape()[i] == 1;
}

const Placements& placements(const Tensor& t) {
  return t.impl()->placements;
}

[[noreturn]] void refuse_pair(const char* op, MeshAxis axis, const Tensor& a, const Tensor& b,
                              const char* why) {
  throw Error(std::string(op) + ": " + describe_placement(a) + " and " + describe_placement(b) +
              " cannot be combined over " + axis_name(axis) + ": " + why);
}

Placements output_of(const char* op) {
  Placements p;
  p.label = std::string("output of ") + op;
  return p;
}

PlantedBug bug_from_env() {
  const char* v = std::getenv("MS_PLANT_BUG");
  if (!v || !*v) return PlantedBug::None;
  for (int i = 1; i <= static_cast<int>(PlantedBug::SaveShardAsWhole); ++i) {
    const auto b = static_cast<PlantedBug>(i);
    if (std::strcmp(v, planted_bug_name(b)) == 0) return b;
  }
  std::string valid;
  for (int i = 1; i <= static_cast<int>(PlantedBug::SaveShardAsWhole); ++i)
    valid += std::string(i > 1 ? ", " : "") + planted_bug_name(static_cast<PlantedBug>(i));
  throw Error(std::string("MS_PLANT_BUG=") + v + " is not a planted bug; valid: " + valid);
}

PlantedBug& planted() {
  static PlantedBug bug = bug_from_env();
  return bug;
}

}  // namespace

const char* axis_name(MeshAxis axis) {
  switch (axis) {
    case MeshAxis::TP:
      return "tp";
    case MeshAxis::CP:
      return "cp";
    case MeshAxis::DP:
      return "dp";
    case MeshAxis::EP:
      return "ep";
    case MeshAxis::ExpertDP:
      return "expert-dp";
    case MeshAxis::Embedding:
      return "the embedding group (first and last pipeline stage)";
  }
  return "?";
}

Placement Placement::sharded(int64_t dim, int64_t ndim) {
  MS_CHECK(dim >= -ndim && dim < ndim && ndim > 0, "Placement::sharded: dim ", dim,
           " is out of range for a ", ndim, "-D tensor");
  return {Kind::Sharded, static_cast<int8_t>(dim < 0 ? dim : dim - ndim)};
}

std::string placement_str(Placement p, int64_t ndim) {
  if (p.kind != Kind::Sharded) return kind_str(p.kind);
  return "sharded(dim " + std::to_string(ndim + p.dim_from_end) + ")";
}

bool placement_checks_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MS_PLACEMENT_CHECKS");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

Placement placement_of(const Tensor& t, MeshAxis axis) {
  return placements(t).on[static_cast<int>(axis)];
}

void set_placement(const Tensor& t, MeshAxis axis, Placement p, const std::string& label) {
  if (!placement_checks_enabled()) return;
  Placements& mine = t.impl()->placements;
  mine.on[static_cast<int>(axis)] = p;
  if (!label.empty()) mine.label = label;
}

void set_label(const Tensor& t, const std::string& label) {
  if (placement_checks_enabled()) t.impl()->placements.label = label;
}

void copy_placements(const Tensor& to, const Tensor& from) {
  if (placement_checks_enabled() && !to.same(from)) to.impl()->placements = placements(from);
}

std::string describe_placement(const Tensor& t) {
  const Placements& p = placements(t);
  std::string s;
  if (p.label.empty()) {
    s = "a tensor";
  } else {
    s.append(1, '\'').append(p.label).append(1, '\'');
  }
  s.append(1, ' ').append(shape_str(t.shape()));
  std::string axes;
  for (int i = 0; i < kMeshAxes; ++i) {
    if (p.on[i].kind == Kind::Unknown) continue;
    axes += (axes.empty() ? "" : ", ") + std::string(axis_name(static_cast<MeshAxis>(i))) + ": " +
            placement_str(p.on[i], t.dim());
  }
  return s + (axes.empty() ? " [no placement]" : " [" + axes + "]");
}

void refuse_placement(const Tensor& t, MeshAxis axis, Placement::Kind bad, const char* op,
                      const char* why) {
  if (!placement_checks_enabled() || placement_of(t, axis).kind != bad) return;
  throw Error(std::string(op) + ": " + describe_placement(t) + " is " + kind_str(bad) + " over " +
              axis_name(axis) + "; " + why);
}

// What two non-partial placements on one axis make together, for a sum and a
// product alike: unknown takes the other side, equal stays, a shard meets a
// replicated tensor only where that one is broadcast along the shard's dim.
static Placement combine_whole(const char* op, MeshAxis axis, const Tensor& a, const Tensor& b) {
  const Placement pa = placements(a).on[static_cast<int>(axis)];
  const Placement pb = placements(b).on[static_cast<int>(axis)];
  if (pa.kind == Kind::Unknown || pb.kind == Kind::Unknown) return pa.is(Kind::Unknown) ? pb : pa;
  if (pa == pb) return pa;
  if (pa.is(Kind::Sharded) && pb.is(Kind::Sharded))
    refuse_pair(op, axis, a, b, "they are sharded along different dims");
  const Placement shard = pa.is(Kind::Sharded) ? pa : pb;
  const Tensor& whole = pa.is(Kind::Sharded) ? b : a;
  if (!broadcast_along(whole, shard.dim_from_end))
    refuse_pair(op, axis, a, b,
                "a replicated tensor that is not broadcast along the shard's dim would meet a "
                "different block on every rank (a missing split or all-gather?)");
  return shard;
}

Placements combine_sum(const char* op, const Tensor& a, const Tensor& b) {
  if (!placements(a).any() && !placements(b).any()) return {};
  Placements out = output_of(op);
  for (int i = 0; i < kMeshAxes; ++i) {
    const MeshAxis axis = static_cast<MeshAxis>(i);
    const Placement pa = placements(a).on[i], pb = placements(b).on[i];
    const bool known = !pa.is(Kind::Unknown) && !pb.is(Kind::Unknown);
    if (known && pa != pb && (pa.is(Kind::Partial) || pb.is(Kind::Partial)))
      refuse_pair(op, axis, a, b,
                  pa.is(Kind::Replicated) || pb.is(Kind::Replicated)
                      ? "the all-reduce that will sum the partial side would add the replicated "
                        "side once per rank (a missing reduction of the partial tensor?)"
                      : "a partial sum and a shard are not the same kind of value (a missing "
                        "reduce-scatter?)");
    out.on[i] = combine_whole(op, axis, a, b);  // P+P = P: equal placements stay
  }
  return out;
}

Placements combine_product(const char* op, const Tensor& a, const Tensor& b, bool b_is_divisor) {
  if (!placements(a).any() && !placements(b).any()) return {};
  Placements out = output_of(op);
  for (int i = 0; i < kMeshAxes; ++i) {
    const MeshAxis axis = static_cast<MeshAxis>(i);
    const Placement pa = placements(a).on[i], pb = placements(b).on[i];
    if (pb.is(Kind::Partial) && b_is_divisor)
      refuse_pair(op, axis, a, b, "dividing by a partial sum is not the partial of a quotient");
    if (pa.is(Kind::Partial) && pb.is(Kind::Partial))
      refuse_pair(op, axis, a, b,
                  "a product of two partial sums is not the sum of the products (reduce one "
                  "first)");
    if ((pa.is(Kind::Partial) && pb.is(Kind::Sharded)) ||
        (pb.is(Kind::Partial) && pa.is(Kind::Sharded)))
      refuse_pair(op, axis, a, b, "a partial sum times a shard has no placement");
    // Linear in the partial factor: P·R = P·unknown = P.
    out.on[i] = pa.is(Kind::Partial) || pb.is(Kind::Partial) ? Placement::partial()
                                                             : combine_whole(op, axis, a, b);
  }
  return out;
}

// A one-input op keeps the name of what it transforms, so an error after a
// dropout or a scale still names the layer that produced the tensor.
Placements keep_linear(const char* op, const Tensor& x) {
  if (!placements(x).any()) return {};
  Placements out = placements(x);
  out.label = out.label.empty() ? std::string("output of ") + op : out.label + ", after " + op;
  return out;
}

Placements keep_nonlinear(const char* op, const Tensor& x) {
  if (!placements(x).any()) return {};
  for (int i = 0; i < kMeshAxes; ++i)
    if (placements(x).on[i].is(Kind::Partial))
      throw Error(std::string(op) + ": " + describe_placement(x) + " is partial(sum) over " +
                  axis_name(static_cast<MeshAxis>(i)) + "; " + op +
                  " is not linear, so it needs the reduced value (a missing all-reduce before " +
                  op + "?)");
  return keep_linear(op, x);
}

Placements keep_rowwise(const char* op, const Tensor& x, int64_t dim) {
  Placements out = keep_nonlinear(op, x);
  const int64_t from_end = dim < 0 ? dim : dim - x.dim();
  for (int i = 0; i < kMeshAxes; ++i)
    if (out.on[i].is(Kind::Sharded) && out.on[i].dim_from_end == from_end)
      throw Error(std::string(op) + ": " + describe_placement(x) + " is sharded over " +
                  axis_name(static_cast<MeshAxis>(i)) + " along dim " +
                  std::to_string(x.dim() + from_end) + ", the dim " + op +
                  " reduces; each rank would see only its block (a missing all-gather?)");
  return out;
}

const Tensor& with_placements(const Tensor& out, const Placements& p) {
  if (placement_checks_enabled() && p.any()) out.impl()->placements = p;
  return out;
}

PlantedBug planted_bug() {
  return planted();
}
void plant_bug(PlantedBug bug) {
  planted() = bug;
}

const char* planted_bug_name(PlantedBug bug) {
  switch (bug) {
    case PlantedBug::None:
      return "none";
    case PlantedBug::SkipRowParallelAllReduce:
      return "skip-row-parallel-all-reduce";
    case PlantedBug::AverageGradientTwice:
      return "average-gradient-twice";
    case PlantedBug::SkipTiedEmbeddingSum:
      return "skip-tied-embedding-sum";
    case PlantedBug::SkipExpertGradientReduce:
      return "skip-expert-gradient-reduce";
    case PlantedBug::SaveShardAsWhole:
      return "save-shard-as-whole";
  }
  return "?";
}

}  // namespace ms
