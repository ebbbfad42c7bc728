// Lesson 01: tensors, strides and views. "Shard a 1000x10 tensor across 4 devices."
// You write these two functions in exercise.cpp; check.cpp grades them.
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/ops.h"

// Splits `t` along `dim` into views, with torch.chunk's sizes: every shard has
// ceil(size / n) slices along `dim`, the last one what is left (so fewer than n
// shards come back when n does not divide evenly enough, e.g. 6 rows into 4 -> 2,2,2).
// No data may be copied: every shard shares t's storage.
// Allowed inputs (what the checker passes): t of any dtype and any number of
// dimensions, contiguous or a strided view (it shards a column shard again);
// 0 <= dim < t.dim(); n >= 1 (the reference solution throws an ms::Error for
// n <= 0; the checker never passes it, nor a negative dim).
std::vector<ms::Tensor> shard(const ms::Tensor& t, int64_t n, int64_t dim);

// The inverse: a new contiguous tensor holding the shards back to back along `dim`.
ms::Tensor unshard(const std::vector<ms::Tensor>& shards, int64_t dim);
