// Lesson 01 grader: checks shard()/unshard() and prints the facts behind them
// (shapes, strides, offsets: the three numbers that make a view a view).
#include <algorithm>
#include <iostream>
#include <string>

#include "lessons/01_tensors/lesson.h"
#include "lessons/lesson_check.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

std::string geometry(const Tensor& s) {
  return str_cat("shape ", shape_str(s.shape()), " strides ", shape_str(s.strides()), " offset ",
                 s.offset(), s.is_contiguous() ? ", contiguous" : ", NOT contiguous");
}

// torch.chunk's sizes, computed independently of the library's chunk().
std::vector<int64_t> chunk_sizes(int64_t size, int64_t n) {
  int64_t per = (size + n - 1) / n;
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < size; start += per) sizes.push_back(std::min(per, size - start));
  return sizes;
}

// Each shard must be a view of t: same storage, same strides, offset moved by start * stride.
void check_views(const Tensor& t, int64_t n, int64_t dim, const std::vector<Tensor>& shards,
                 const std::string& call, bool print) {
  std::vector<int64_t> want = chunk_sizes(t.size(dim), n), got;
  for (const Tensor& s : shards)
    got.push_back(s.defined() && s.dim() == t.dim() ? s.size(dim) : -1);  // -1: not a shard
  if (got != want)
    fail(str_cat(call, ": expected shards of sizes ", shape_str(want), " along dim ", dim, ", got ",
                 shape_str(got), ". Hint: torch.chunk gives every shard ceil(", t.size(dim), "/", n,
                 ") = ", want[0], " and the last one what is left"));
  int64_t start = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const Tensor& s = shards[i];
    Shape shape = t.shape();
    shape[dim] = want[i];
    int64_t offset = t.offset() + start * t.stride(dim);
    if (s.shape() != shape)
      fail(str_cat(call, ": shard ", i, " has shape ", shape_str(s.shape()), ", expected ",
                   shape_str(shape)));
    if (s.storage() != t.storage())
      fail(str_cat(call, ": shard ", i,
                   " does not share t's storage: it was copied. Hint: "
                   "narrow() is a view; clone(), contiguous(), cat() and to() copy"));
    if (s.strides() != t.strides() || s.offset() != offset)
      fail(str_cat(call, ": shard ", i, " has strides ", shape_str(s.strides()), " offset ",
                   s.offset(), ", expected t's strides ", shape_str(t.strides()), " and offset ",
                   t.offset(), " + ", start, " * stride ", t.stride(dim), " = ", offset,
                   " (it should start at slice ", start, " of dim ", dim, ")"));
    if (print) std::cout << "  shard " << i << ": " << geometry(s) << "\n";
    start += want[i];
  }
}

void check_unshard(const Tensor& t, int64_t n, int64_t dim) {
  std::string call =
      str_cat("unshard(shard(t ", shape_str(t.shape()), ", ", n, ", ", dim, "), ", dim, ")");
  Tensor back = unshard(shard(t, n, dim), dim);
  if (!back.defined() || back.shape() != t.shape())
    fail(str_cat(call, ": expected shape ", shape_str(t.shape()), ", got ",
                 back.defined() ? shape_str(back.shape()) : "an undefined tensor"));
  std::vector<double> want = t.to_vector(), got = back.to_vector();
  for (size_t k = 0; k < want.size(); ++k)
    if (got[k] != want[k])
      fail(str_cat(call, ": element ", k, " (row-major) is ", got[k], ", expected ", want[k],
                   ". Hint: put the shards back in order along dim ", dim));
  if (!back.is_contiguous())
    fail(str_cat(call, ": result is not contiguous (", geometry(back), "): return a new tensor"));
}

void run() {
  Tensor t = reshape(arange(10000), {1000, 10});
  std::cout << "t = arange(10000) as [1000, 10]: " << geometry(t)
            << "\n  (element [i][j] lives at offset + i*10 + j*1)\n";

  // Rows: each device gets 250 whole rows, one contiguous block of memory.
  std::cout << "shard(t, 4, 0):\n";
  std::vector<Tensor> rows = shard(t, 4, 0);
  check_views(t, 4, 0, rows, "shard(t, 4, 0)", true);
  pass("row shards are 4 views of [250, 10] at offsets 0, 2500, 5000, 7500: nothing copied");

  float* t_data = t.host_data<float>();
  rows[2].host_data<float>()[0] = -1;  // shard 2's [0][0] is t[500][0]
  if (t_data[500 * 10] != -1) fail("writing rows[2][0][0] did not change t[500][0]: a copy?");
  t_data[500 * 10] = 5000;
  pass("writing rows[2][0][0] changes t[500][0]: shards alias t's memory");

  // Columns: each shard keeps t's row stride 10 but has only 3 columns, so its
  // rows are not back to back in memory.
  std::cout << "shard(t, 4, 1):\n";
  std::vector<Tensor> cols = shard(t, 4, 1);
  check_views(t, 4, 1, cols, "shard(t, 4, 1)", true);
  Tensor c = cols[1];
  std::cout << "  cols[1][2][1] sits at offset 3 + 2*10 + 1*1 = 24, and holds "
            << c.host_data<float>()[2 * c.stride(0) + 1 * c.stride(1)] << " (t is arange)\n";
  pass("column shards 3,3,3,1 are strided views with t's strides [10, 1]: not contiguous");

  // Uneven and offset cases.
  Tensor u = reshape(arange(30), {10, 3});
  check_views(u, 4, 0, shard(u, 4, 0), "shard(10x3, 4, 0)", false);
  pass("10 rows into 4 shards: 3, 3, 3, 1");
  Tensor six = reshape(arange(18), {6, 3});
  check_views(six, 4, 0, shard(six, 4, 0), "shard(6x3, 4, 0)", false);
  pass("6 rows into 4: 2, 2, 2 (only 3 shards, exactly like torch.chunk)");
  check_views(rows[1], 2, 1, shard(rows[1], 2, 1), "shard(rows[1], 2, 1)", false);
  pass("sharding a view (offset 2500) offsets from the view, not from 0");

  check_unshard(t, 4, 0);
  check_unshard(t, 4, 1);
  check_unshard(u, 4, 0);
  pass("unshard(shard(t, 4, d), d) == t for d = 0, 1 and for uneven shards");

  // Facts a learner should be able to explain (see README.md).
  Tensor tt = transpose(t, 0, 1);
  std::cout << "facts:\n  transpose(t): " << geometry(tt)
            << ", same storage: " << (tt.storage() == t.storage() ? "yes" : "no") << "\n";
  try {
    view(tt, {-1});
    std::cout << "  view(transpose(t), {-1}) succeeded?!\n";
  } catch (const Error& e) {
    std::cout << "  view(transpose(t), {-1}) throws: " << e.what() << "\n";
  }
  Tensor flat = reshape(cols[0], {-1});
  std::cout << "  reshape(cols[0], {-1}) copies: same storage as t: "
            << (flat.storage() == t.storage() ? "yes" : "no") << "\n";
  std::cout << "  memory: t is " << t.nbytes() << " bytes; a row shard is " << rows[0].nbytes()
            << " bytes, but as a view it still pins all " << rows[0].storage()->nbytes()
            << " bytes: a device saves memory only once it holds its own copy\n";
  // What does save memory (ZeRO partitioning, Megatron tensor slicing): each rank KEEPS a
  // copy of its own shard, on its own device, and the full tensor is freed.
  Tensor kept = clone(rows[2]);
  std::cout << "  a rank that keeps its own copy of shard 2 holds " << kept.storage()->nbytes()
            << " bytes (shares t's storage: " << (kept.storage() == t.storage() ? "yes" : "no")
            << "), so t's " << t.storage()->nbytes() << " bytes can be freed\n";
}

}  // namespace

int main() {
  return lesson::run_checks(run);
}
