// Lesson 10 grader (8 ranks): coord_of, groups and split_group against
// Megatron's layout, rank = tp + dp·TP + pp·TP·DP.
//   1. coord_of on every rank of 8-rank layouts (against the library's
//      ms::Mesh, built on this world) and 16-rank layouts (against the
//      formula: a 16-rank Mesh needs 16 processes);
//   2. groups() for every dimension of those layouts, and its error when the
//      sizes do not multiply to the world;
//   3. split_group on this world for three layouts: each communicator's
//      members (all-gathered over it) and their order against the library
//      Mesh's, and an all-reduce on each that must sum exactly its members.
// The diagnoses name the classic mistakes: dp fastest instead of tp (groups
// transposed), MeshCoord's fields filled in the wrong order (told apart from
// a transposed order on layouts whose three sizes differ), a rank missing
// from a group or held twice, color and key of split swapped or the key not the coordinate, sizes that do not multiply to
// the world. After a PASS, traffic.h measures what each dimension moves.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lessons/10_3d_parallel/lesson.h"
#include "lessons/10_3d_parallel/traffic.h"
#include "lessons/lesson_check.h"
#include "parallel/comm/runtime.h"

using namespace ms;
using namespace lesson10;
using lesson::agree;

namespace {

constexpr double kTimeout = 20;
using Groups = std::vector<std::vector<int>>;

const char* name_of(Dim d) {
  return d == Dim::TP ? "tp" : d == Dim::DP ? "dp" : "pp";
}
int size_along(const Layout& l, Dim d) {
  return d == Dim::TP ? l.tp : d == Dim::DP ? l.dp : l.pp;
}
int along(const MeshCoord& c, Dim d) {
  return d == Dim::TP ? c.tp : d == Dim::DP ? c.dp : c.pp;
}
bool same(const MeshCoord& a, const MeshCoord& b) {
  return a.tp == b.tp && a.dp == b.dp && a.pp == b.pp;
}
std::string coord_str(const MeshCoord& c) {
  return str_cat("(tp ", c.tp, ", dp ", c.dp, ", pp ", c.pp, ")");
}
std::string list(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += str_cat(i ? " " : "", v[i]);
  return s + "]";
}
std::string glist(const Groups& g) {
  std::string s;
  for (const auto& v : g) {
    if (!s.empty()) s += ' ';
    s += list(v);
  }
  return s;
}
// The groups in a canonical order (by first member), each group as given.
Groups canon(Groups g) {
  std::sort(g.begin(), g.end());
  return g;
}

// The reference: Megatron's formula (ms::Mesh computes the same; the checker
// compares with a Mesh wherever the world has that many ranks).
MeshCoord ref_coord(int r, const Layout& l) {
  return MeshCoord{(r / l.tp) % l.dp, r % l.tp, r / (l.tp * l.dp)};
}
// Another order, fastest dimension first: what a transposed layout computes.
MeshCoord coord_in_order(int r, const Layout& l, const std::vector<Dim>& order) {
  MeshCoord c;
  for (Dim d : order) {
    const int n = size_along(l, d);
    (d == Dim::TP ? c.tp : d == Dim::DP ? c.dp : c.pp) = r % n;
    r /= n;
  }
  return c;
}
Groups ref_groups(const Layout& l, Dim which) {
  Groups out;
  for (int r = 0; r < l.world(); ++r) {
    const MeshCoord c = ref_coord(r, l);
    if (along(c, which) != 0) continue;
    std::vector<int> g;
    for (int q = r; q < l.world(); ++q) {
      const MeshCoord o = ref_coord(q, l);
      if ((which == Dim::TP || o.tp == c.tp) && (which == Dim::DP || o.dp == c.dp) &&
          (which == Dim::PP || o.pp == c.pp))
        g.push_back(q);
    }
    out.push_back(g);
  }
  return out;
}

// Pure functions give every rank the same answer, so any error they throw is
// a FAIL every rank agrees on (not an abort).
template <class F>
std::string guarded_pure(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return str_cat("your code threw: ", e.what());
  }
  return "";
}
// For split_group: only the stub's "TODO" (thrown on every rank before any
// communication) becomes a FAIL; other errors abort the job with their
// message (ms::run_distributed), since a rank may be inside a collective.
template <class F>
std::string guarded_collective(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).rfind("TODO", 0) != 0) throw;
    return str_cat("your code threw: ", e.what());
  }
  return "";
}

// ---- 1. coord_of ----

// Layouts whose three sizes all differ: on the article's 2 × 2 × 2 a swap of
// two MeshCoord fields and a transposed rank order give the same numbers, so
// the slips are told apart on these (pure functions: any world size works).
const Layout kProbes[] = {{4, 2, 3}, {3, 4, 2}, {2, 3, 4}};

const char* field_of(Dim d) {
  return d == Dim::TP ? ".tp" : d == Dim::DP ? ".dp" : ".pp";
}
int& field(MeshCoord& c, Dim d) {
  return d == Dim::TP ? c.tp : d == Dim::DP ? c.dp : c.pp;
}

// Does `slip` turn Megatron's coordinates into the learner's on every rank of
// `l` and of every probe layout? Exceptions count as "no".
template <class Slip>
bool explains(const Layout& l, Slip&& slip) {
  try {
    std::vector<Layout> all(std::begin(kProbes), std::end(kProbes));
    all.push_back(l);
    for (const Layout& p : all)
      for (int r = 0; r < p.world(); ++r)
        if (!same(coord_of(r, p.tp, p.dp, p.pp), slip(r, p))) return false;
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

std::string diagnose_coords(const Layout& l, const Mesh* mesh) {
  std::vector<MeshCoord> got(size_t(l.world()));
  std::string why = guarded_pure([&] {
    for (int r = 0; r < l.world(); ++r) got[size_t(r)] = coord_of(r, l.tp, l.dp, l.pp);
  });
  if (!why.empty()) return why;
  for (int r = 0; r < l.world(); ++r) {
    const MeshCoord want = mesh ? mesh->coord_of(r) : ref_coord(r, l);
    if (same(got[size_t(r)], want)) continue;
    const std::string example = str_cat("Rank ", r, " of ", l.str(), " is ", coord_str(want),
                                        ", you said ", coord_str(got[size_t(r)]), ". ");
    // The right numbers in the wrong fields: ms::MeshCoord is {dp, tp, pp}, so
    // MeshCoord{tp_value, dp_value, pp_value} stores tp's value in .dp.
    const std::pair<Dim, Dim> pairs[] = {
        {Dim::TP, Dim::DP}, {Dim::TP, Dim::PP}, {Dim::DP, Dim::PP}};
    for (auto [a, b] : pairs)
      if (explains(l, [&](int q, const Layout& p) {
            MeshCoord c = ref_coord(q, p);
            std::swap(field(c, a), field(c, b));
            return c;
          }))
        return str_cat(
            "coord_of computes Megatron's coordinates but stores two of them in each other's ",
            "fields: the ", name_of(a), " coordinate lands in ", field_of(b), " and the ",
            name_of(b), " coordinate in ", field_of(a), " (on every rank of every layout tried, ",
            "including ones whose three sizes differ). ", example,
            "ms::MeshCoord is {dp, tp, pp}: positional MeshCoord{a, b, c} fills .dp first. ",
            "Name the fields — MeshCoord{.dp = ..., .tp = ..., .pp = ...} — and the compiler ",
            "checks the order.");
    // A transposed rank order: another dimension varies fastest.
    const std::vector<std::vector<Dim>> orders = {
        {Dim::DP, Dim::TP, Dim::PP}, {Dim::TP, Dim::PP, Dim::DP}, {Dim::DP, Dim::PP, Dim::TP},
        {Dim::PP, Dim::TP, Dim::DP}, {Dim::PP, Dim::DP, Dim::TP}};
    for (const auto& order : orders) {
      if (!explains(l, [&](int q, const Layout& p) { return coord_in_order(q, p, order); }))
        continue;
      if (order[0] == Dim::DP && order[1] == Dim::TP)
        return str_cat("coord_of puts dp fastest instead of tp (rank = dp + tp·DP + pp·DP·TP): ",
                       "every group comes out transposed — your tp groups are Megatron's dp ",
                       "groups, so the per-layer all-reduces would cross nodes while the ",
                       "once-per-step gradients stay inside one. ", example,
                       "Megatron: rank = tp + dp·TP + pp·TP·DP, tp fastest.");
      // Which dimensions left their place in Megatron's order (tp, dp, pp)?
      const Dim megatron[] = {Dim::TP, Dim::DP, Dim::PP};
      std::vector<Dim> moved;
      for (int i = 0; i < 3; ++i)
        if (order[size_t(i)] != megatron[i]) moved.push_back(megatron[i]);
      const std::string swapped =
          moved.size() == 2
              ? str_cat("the ", name_of(moved[0]), " and ", name_of(moved[1]),
                        " dimensions trade places in the numbering (with equal sizes your ",
                        name_of(moved[0]), " groups are Megatron's ", name_of(moved[1]),
                        " groups and the other way round)")
              : std::string("all three dimensions leave their places in the numbering");
      return str_cat("coord_of numbers the ranks ", name_of(order[0]), " fastest, then ",
                     name_of(order[1]), ", then ", name_of(order[2]), ": ", swapped, ". ",
                     example,
                     "Megatron: rank = tp + dp·TP + pp·TP·DP — tp fastest (a layer's shards on ",
                     "one node), pp slowest.");
    }
    return str_cat("coord_of(", r, ", tp ", l.tp, ", dp ", l.dp, ", pp ", l.pp,
                   ") = ", coord_str(got[size_t(r)]),
                   "; Megatron's rank = tp + dp·TP + pp·TP·DP gives ", coord_str(want),
                   mesh ? " (the library's ms::Mesh agrees)" : "");
  }
  return "";
}

// ---- 2. groups ----

std::string diagnose_groups(const Layout& l, Dim which) {
  const char* n = name_of(which);
  Groups got;
  std::string why = guarded_pure([&] { got = groups(l.world(), l.tp, l.dp, l.pp, which); });
  if (!why.empty()) return str_cat("groups(", l.str(), ", ", n, "): ", why);
  const Groups want = ref_groups(l, which);
  if (canon(got) == want) return "";
  const std::string head = str_cat("groups(", l.str(), ", ", n, ") = ", glist(got), ": ");
  std::map<int, int> seen;  // rank -> the groups it is in
  for (const auto& g : got)
    for (int r : g) ++seen[r];
  for (const auto& g : got)
    for (int r : g)
      if (seen[r] > 1)
        return str_cat(head, "rank ", r, " is held ", seen[r], " times; every rank must be in ",
                       "exactly one ", n, " group (it has one ", n, " coordinate)");
  for (const auto& w : want)
    for (int r : w)
      if (!seen.count(r))
        return str_cat(head, "rank ", r, " is missing: it is in no ", n, " group (Megatron's is ",
                       list(w), "). Every rank is in exactly one ", n, " group.");
  for (Dim other : {Dim::TP, Dim::DP, Dim::PP})
    if (other != which && canon(got) == ref_groups(l, other))
      return str_cat(head, "these are Megatron's ", name_of(other), " groups — transposed. ", "A ",
                     n, " group is the ranks that share the OTHER two coordinates and differ ",
                     "in their ", n,
                     " coordinate; with tp fastest, tp groups are consecutive ranks.");
  for (const auto& g : got) {
    std::vector<int> s = g;
    std::sort(s.begin(), s.end());
    for (const auto& w : want)
      if (s == w && g != w)
        return str_cat(head, "group ", list(g), " holds the right ranks in the wrong order: list ",
                       "them by their ", n, " coordinate, ", list(w),
                       " (group rank i = coordinate i)");
  }
  return str_cat(head, "Megatron's ", n, " groups are ", glist(want));
}

// The error for sizes that do not multiply to the world: it must name all four.
std::string diagnose_size_error() {
  const int world = 16, tp = 4, dp = 3, pp = 5;
  const std::string call = "groups(16, tp 4, dp 3, pp 5, tp)";
  std::string msg;
  bool threw = false, ms_error = false;
  try {
    (void)groups(world, tp, dp, pp, Dim::TP);
  } catch (const Error& e) {
    threw = ms_error = true;
    msg = e.what();
  } catch (const std::exception& e) {
    threw = true;
    msg = e.what();
  }
  if (!threw)
    return str_cat(call, " returned instead of throwing: 4 × 3 × 5 = 60 ranks of mesh on a ",
                   "16-rank world. Check the sizes first (MS_CHECK), or the job computes groups ",
                   "with ranks that do not exist.");
  if (!ms_error)
    return str_cat(call, " threw a std::exception, not an ms::Error: \"", msg,
                   "\". A user's wrong sizes are an ms::Error (MS_CHECK).");
  std::set<std::string> numbers;
  std::string cur;
  for (char ch : msg + " ") {
    if (ch >= '0' && ch <= '9')
      cur += ch;
    else if (!cur.empty())
      numbers.insert(cur), cur.clear();
  }
  std::string missing;
  for (const char* want : {"16", "4", "3", "5"})
    if (!numbers.count(want)) missing += str_cat(missing.empty() ? "" : ", ", want);
  if (!missing.empty())
    return str_cat(call, " threw \"", msg, "\", which does not name ", missing,
                   ". Name all four numbers (tp, dp, pp and the world) so the user sees which ",
                   "one to change.");
  return "";
}

// ---- 3. split_group ----

// Collective: this rank's members of `comm`, in group-rank order.
std::vector<int> members(Communicator& comm, int world_rank) {
  Tensor mine = from_vector(std::vector<double>{double(world_rank)}, {1}, DType::I32);
  Tensor all = zeros({comm.size()}, DType::I32);
  comm.all_gather(mine, all);
  std::vector<int> out;
  for (double v : all.to_vector()) out.push_back(int(v));
  return out;
}

std::string diagnose_split(Communicator& world, const Layout& l, Mesh& mesh, Dim which,
                           Communicator& got) {
  const char* n = name_of(which);
  const int r = world.rank();
  Communicator& lib = which == Dim::TP ? mesh.tp() : which == Dim::DP ? mesh.dp() : mesh.pp();
  const std::vector<int> mine = members(got, r), want = members(lib, r);
  // A collective on the group: the sum of world ranks must be its members'.
  Tensor s = from_vector(std::vector<double>{double(r)}, {1}, DType::I32);
  got.all_reduce(s, ReduceOp::Sum);
  int want_sum = 0;
  for (int q : want) want_sum += q;
  const int coord = along(mesh.coord(), which);
  const std::string head =
      str_cat("rank ", r, " ", coord_str(mesh.coord()), ": your ", n, " communicator holds ",
              list(mine), " (all-gathered over it), its ", n, " rank is ", got.rank(),
              "; the library's Mesh: ", list(want), ", ", n, " rank ", coord, ". ");
  std::vector<int> sorted = mine;
  std::sort(sorted.begin(), sorted.end());
  if (mine == want) {
    if (got.rank() != coord)
      return str_cat(head, "The rank does not match its own all-gather slot?");
    if (int(s.to_vector()[0]) != want_sum)
      return str_cat(head, "But an all-reduce on it summed ", s.to_vector()[0], ", not ", want_sum);
    return "";
  }
  if (int(mine.size()) == l.world())
    return str_cat(head, "That is the whole world: every rank passed the same color. The color ",
                   "must differ between groups: number the other two coordinates.");
  // The ranks that share MY coordinate along `which`: a split by (color = it).
  std::vector<int> fibre;
  for (int q = 0; q < l.world(); ++q)
    if (along(mesh.coord_of(q), which) == coord) fibre.push_back(q);
  if (sorted == fibre)
    return str_cat(
        head, "These are the ranks with the same ", n, " coordinate as yours: color and ",
        "key are swapped. color = what a group's members SHARE (the other two ",
        "coordinates, numbered), key = the rank's place in it (its ", n, " coordinate).");
  std::vector<int> want_sorted = want;
  std::sort(want_sorted.begin(), want_sorted.end());
  if (sorted == want_sorted)
    return str_cat(head, "The right ranks in the wrong order: the key of split orders a group, ",
                   "and it must be the rank's ", n, " coordinate, so that ", n, ".rank() == ", n,
                   " coordinate", which == Dim::PP ? " (stage s talks to s−1 and s+1)" : "", ".");
  for (Dim other : {Dim::TP, Dim::DP, Dim::PP}) {
    if (other == which) continue;
    std::vector<int> og;
    for (int q = 0; q < l.world(); ++q) {
      const MeshCoord c = mesh.coord_of(q), me = mesh.coord();
      if ((other == Dim::TP || c.tp == me.tp) && (other == Dim::DP || c.dp == me.dp) &&
          (other == Dim::PP || c.pp == me.pp))
        og.push_back(q);
    }
    if (sorted == og && og != want_sorted)
      return str_cat(head, "That is your ", name_of(other), " group: the color numbers the wrong ",
                     "coordinates. A ", n, " group shares the two coordinates other than ", n, ".");
  }
  // Several whole groups merged into one: two groups were given the same color.
  std::set<int> merged;
  int count = 0;
  for (int q = 0; q < l.world(); ++q) {
    const MeshCoord c = mesh.coord_of(q);
    if (along(c, which) != 0) continue;  // q leads one library group
    std::vector<int> g;
    for (int x = 0; x < l.world(); ++x) {
      const MeshCoord o = mesh.coord_of(x);
      if ((which == Dim::TP || o.tp == c.tp) && (which == Dim::DP || o.dp == c.dp) &&
          (which == Dim::PP || o.pp == c.pp))
        g.push_back(x);
    }
    if (std::includes(sorted.begin(), sorted.end(), g.begin(), g.end())) {
      merged.insert(g.begin(), g.end());
      ++count;
    }
  }
  if (count >= 2 && merged == std::set<int>(sorted.begin(), sorted.end()))
    return str_cat(head, "That is ", count, " of Megatron's ", n, " groups merged into one: ",
                   "different groups got the same color. Number the other two coordinates ",
                   "without collisions, each multiplied by the size of the one before it.");
  return str_cat(head, "The members must be the ranks sharing your other two coordinates.");
}

bool check_layout_pure(Communicator& world, const Layout& l, const char* label, bool print) {
  std::unique_ptr<Mesh> mesh;
  if (l.world() == world.size()) mesh = std::make_unique<Mesh>(world, l.dp, l.tp, l.pp);
  const std::string what =
      str_cat(label, l.str(), ": coord_of",
              mesh ? " matches the library's ms::Mesh" : " matches the formula");
  if (!agree(world, diagnose_coords(l, mesh.get()), what)) return false;
  std::string why;
  for (Dim d : {Dim::TP, Dim::DP, Dim::PP})
    if (why.empty()) why = diagnose_groups(l, d);
  if (!agree(world, why, str_cat(label, l.str(), ": groups() of tp, dp and pp"))) return false;
  if (print && world.rank() == 0) {
    std::printf("    rank = tp + dp·%d + pp·%d\n", l.tp, l.tp * l.dp);
    for (Dim d : {Dim::TP, Dim::DP, Dim::PP})
      std::printf("    %s groups %s\n", name_of(d),
                  glist(groups(l.world(), l.tp, l.dp, l.pp, d)).c_str());
  }
  return true;
}

bool check_split(Communicator& world, const Layout& l) {
  Mesh mesh(world, l.dp, l.tp, l.pp);
  std::string why;
  for (Dim d : {Dim::TP, Dim::DP, Dim::PP}) {
    Communicator got = world;
    const std::string err =
        guarded_collective([&] { got = split_group(world, l.tp, l.dp, l.pp, d); });
    if (!err.empty()) {
      why = err;
      break;
    }
    got.set_timeout(kTimeout);
    why = diagnose_split(world, l, mesh, d, got);
    // Every rank ran the same collectives; stop at the first dimension any rank got wrong.
    Tensor bad = from_vector(std::vector<double>{why.empty() ? 0.0 : 1.0}, {1}, DType::I32);
    world.all_reduce(bad, ReduceOp::Max);
    if (bad.to_vector()[0] != 0) break;
  }
  return agree(world, why,
               str_cat(l.str(),
                       ": split_group gives every rank its tp, dp and pp communicator — "
                       "the members and order of ms::Mesh's, and an all-reduce on each "
                       "sums exactly its members"));
}

}  // namespace

int main(int argc, char** argv) {
  return lesson::run_ranks(argc, argv, [](Communicator& world) {
    world.set_timeout(kTimeout);
    MS_CHECK(world.size() == 8, "lesson 10 runs on 8 ranks (mpirun -np 8), got ", world.size());
    const Layout article{2, 2, 2};
    if (world.rank() == 0)
      std::printf(
          "the article's config {\"mp_size\": 2, \"dp_size\": 2, \"pipeline_size\": 2}: "
          "tp 2 × dp 2 × pp 2 = 8 ranks\n");
    if (!check_layout_pure(world, article, "", true)) return lesson::finish(world, false);
    for (const Layout& l : {Layout{4, 2, 1}, Layout{2, 1, 4}, Layout{1, 8, 1}})
      if (!check_layout_pure(world, l, "", false)) return lesson::finish(world, false);
    if (world.rank() == 0) std::printf("16 ranks (pure functions, against the formula):\n");
    for (const Layout& l : {Layout{2, 2, 4}, Layout{4, 2, 2}})
      if (!check_layout_pure(world, l, "", l.tp == 2)) return lesson::finish(world, false);
    if (!agree(world, diagnose_size_error(),
               "groups(16, tp 4, dp 3, pp 5, ...) throws an ms::Error naming 4, 3, 5 and 16"))
      return lesson::finish(world, false);
    for (const Layout& l : {article, Layout{4, 2, 1}, Layout{2, 1, 4}})
      if (!check_split(world, l)) return lesson::finish(world, false);
    return lesson::finish(world, measure_traffic(world, article));
  });
}
