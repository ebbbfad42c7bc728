// Lesson 01 exercise: replace the two TODOs, then run `make lesson L=01 TRY=1`.
// Tools (autograd/ops.h): narrow(t, dim, start, length) is a zero-copy view;
// t.size(dim); cat(tensors, dim) copies into a new tensor.
#include "lessons/01_tensors/lesson.h"

std::vector<ms::Tensor> shard(const ms::Tensor& t, int64_t n, int64_t dim) {
  // TODO: compute each shard's start and length along `dim` yourself (not with chunk/split)
  // and return narrow() views.
  (void)t, (void)n, (void)dim;
  throw ms::Error("TODO: implement shard() in lessons/01_tensors/exercise.cpp");
}

ms::Tensor unshard(const std::vector<ms::Tensor>& shards, int64_t dim) {
  // TODO: put the shards back together along `dim`.
  (void)shards, (void)dim;
  throw ms::Error("TODO: implement unshard() in lessons/01_tensors/exercise.cpp");
}
