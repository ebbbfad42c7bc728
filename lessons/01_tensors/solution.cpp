// Lesson 01 reference solution.
#include <algorithm>

#include "lessons/01_tensors/lesson.h"

std::vector<ms::Tensor> shard(const ms::Tensor& t, int64_t n, int64_t dim) {
  MS_CHECK(n > 0, "shard: n must be positive, got ", n);
  int64_t size = t.size(dim);
  int64_t per = (size + n - 1) / n;  // ceil: every shard but the last is full
  std::vector<ms::Tensor> shards;
  for (int64_t start = 0; start < size; start += per)
    // narrow keeps t's strides and moves the offset by start * stride(dim): no copy.
    shards.push_back(ms::narrow(t, dim, start, std::min(per, size - start)));
  return shards;
}

ms::Tensor unshard(const std::vector<ms::Tensor>& shards, int64_t dim) {
  // Reassembling must copy: the pieces may live in different storages (devices).
  return ms::cat(shards, dim);
}
