// Sharding and unsharding serial parameters (see shard.h for the rules).
#include "parallel/tp/shard.h"

#include "autograd/ops.h"
#include "parallel/comm/placement.h"
#include "parallel/tp/mappings.h"

namespace ms {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

int64_t split_dim(const Tensor& t, TpSplit split) {
  return split == TpSplit::Rows ? 0 : t.dim() - 1;
}

// The t contiguous chunks of each q, k, v block of the last dim, regrouped by
// rank: the inverse of cutting 3 blocks into t pieces.
Tensor regroup_qkv(const std::vector<Tensor>& shards) {
  std::vector<Tensor> q, k, v;
  for (const Tensor& s : shards) {
    std::vector<Tensor> parts = chunk(detach(s), 3, s.dim() - 1);  // this rank's q, k, v heads
    q.push_back(parts[0]);
    k.push_back(parts[1]);
    v.push_back(parts[2]);
  }
  const int64_t last = shards[0].dim() - 1;
  return cat({cat(q, last), cat(k, last), cat(v, last)}, last);
}

}  // namespace

const char* tp_split_name(TpSplit s) {
  switch (s) {
    case TpSplit::Replicated:
      return "replicated";
    case TpSplit::Rows:
      return "rows";
    case TpSplit::Columns:
      return "columns";
    case TpSplit::Qkv:
      return "q|k|v columns";
  }
  return "?";
}

TpSplit tp_split_of(const std::string& name) {
  if (name == "wte.weight") return TpSplit::Rows;  // VocabParallelEmbedding: a vocab range
  if (ends_with(name, "attn.c_attn.weight") || ends_with(name, "attn.c_attn.bias"))
    return TpSplit::Qkv;
  if (ends_with(name, "mlp.c_fc.weight") || ends_with(name, "mlp.c_fc.bias"))
    return TpSplit::Columns;
  if (ends_with(name, "c_proj.weight")) return TpSplit::Rows;  // attn and mlp: row-parallel
  return TpSplit::Replicated;  // c_proj biases (added after the all-reduce), wpe, LayerNorms
}

Tensor shard_param(const Tensor& full, TpSplit split, int rank, int tp, int64_t n_head,
                   const std::string& name) {
  MS_CHECK(tp >= 1 && rank >= 0 && rank < tp, name, ": tp rank ", rank, " is not in [0, ", tp, ")");
  if (split == TpSplit::Replicated) return clone(detach(full));
  MS_CHECK(full.dim() >= 1, name, ": a scalar cannot be split over tp ", tp);
  const int64_t dim = split_dim(full, split), n = full.shape()[dim];
  if (split == TpSplit::Qkv) {
    MS_CHECK(n_head > 0 && n_head % tp == 0, name, ": n_head ", n_head, " is not divisible by tp ",
             tp, " (each tp rank must own whole attention heads)");
    MS_CHECK(n % (3 * n_head) == 0, name, ": shape ", shape_str(full.shape()), " is not q|k|v of ",
             n_head, " heads (last dim must be 3·C with C % n_head == 0)");
    const int64_t C = n / 3, w = C / tp;
    std::vector<Tensor> parts;  // my heads' columns of q, then k, then v
    for (int64_t i = 0; i < 3; ++i) parts.push_back(narrow(detach(full), dim, i * C + rank * w, w));
    return contiguous(cat(parts, dim));  // [C, 3C/t] or [3C/t]
  }
  MS_CHECK(n % tp == 0, name, ": shape ", shape_str(full.shape()), " does not split over tp ", tp,
           " along dim ", dim, " (", tp_split_name(split), ": ", n, " % ", tp, " != 0)");
  return clone(narrow(detach(full), dim, rank * (n / tp), n / tp));
}

Tensor unshard_param(const std::vector<Tensor>& shards, TpSplit split) {
  MS_CHECK(!shards.empty(), "unshard_param: no shards");
  if (split == TpSplit::Replicated) return clone(detach(shards[0]));
  if (split == TpSplit::Qkv) return regroup_qkv(shards);
  std::vector<Tensor> parts;
  for (const Tensor& s : shards) parts.push_back(detach(s));
  return cat(parts, split_dim(shards[0], split));
}

Tensor gather_param(const Tensor& shard, TpSplit split, Communicator& tp) {
  if (split == TpSplit::Replicated) return clone(detach(shard));
  Tensor all =
      tp_all_gather(shard, split_dim(shard, split), tp, "gather_param");  // shards side by side
  if (split != TpSplit::Qkv) return all;
  return regroup_qkv(chunk(all, tp.size(), all.dim() - 1));
}

void place_tp_param(const Tensor& param, TpSplit split, const Communicator& tp,
                    const std::string& name) {
  const Placement p = split == TpSplit::Replicated
                          ? Placement::replicated()
                          : Placement::sharded(split_dim(param, split), param.dim());
  place_over(param, MeshAxis::TP, tp, p, name);
}

}  // namespace ms
