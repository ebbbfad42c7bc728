#include "parallel/engine/checkpoint_state.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/safetensors.h"
#include "parallel/tp/shard.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "minispeed-checkpoint";
constexpr int kVersion = 1;

std::string read_text(const std::string& path, const std::string& what) {
  std::error_code ec;
  MS_CHECK(fs::is_regular_file(path, ec), "checkpoint: ", what, " '", path,
           "' is missing (a checkpoint folder holds COMPLETE and rank_NNNNN.{json,safetensors} "
           "for every rank that saved it)");
  std::ifstream f(path, std::ios::binary);
  MS_CHECK(f.good(), "checkpoint: cannot read ", what, " '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Shape shape_from(const json& j) {
  Shape s;
  for (const json& d : j) {
    const int64_t n = d.get<int64_t>();
    MS_CHECK(n >= 0, "negative dimension ", n);
    s.push_back(n);
  }
  return s;
}

// The shard shape tp rank r of t holds of a serial parameter (shard.h's table).
Shape local_shape_of(const Shape& serial, TpSplit split, int t) {
  Shape s = serial;
  if (t == 1 || split == TpSplit::Replicated) return s;
  int64_t& d = split == TpSplit::Rows ? s.front() : s.back();
  d /= t;
  return s;
}

}  // namespace

std::string rank_file_stem(const std::string& tag_dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank_%05d", rank);
  return (fs::path(tag_dir) / name).string();
}

std::string record_to_json(const RankRecord& r) {
  json pieces = json::array();
  for (const RankRecord::Piece& p : r.pieces)
    pieces.push_back(
        {{"name", p.name}, {"local_shape", p.local_shape}, {"begin", p.begin}, {"end", p.end}});
  const CheckpointLayout& l = r.layout;
  json j = {
      {"format", kFormat},
      {"version", kVersion},
      {"rank", r.rank},
      {"world_size", r.world_size},
      {"step", r.step},
      {"skipped_steps", r.skipped_steps},
      // The data contract (docs/architecture.md): the batches of step s are a
      // pure function of (s, micro-step, dp rank), so the step IS the position.
      {"data_position", {{"next_step", r.step}}},
      {"layout",
       {{"dp", l.dp},
        {"tp", l.tp},
        {"pp", l.pp},
        {"zero_stage", l.zero_stage},
        {"virtual_stages", l.virtual_stages},
        {"sequence_parallel", l.sequence_parallel},
        {"dp_rank", l.dp_rank},
        {"tp_rank", l.tp_rank},
        {"pp_rank", l.pp_rank}}},
      {"model",
       {{"vocab_size", r.model.vocab_size},
        {"block_size", r.model.block_size},
        {"n_layer", r.model.n_layer},
        {"n_head", r.model.n_head},
        {"n_embd", r.model.n_embd},
        {"dropout", r.model.dropout}}},
      {"optimizer",
       {{"name", r.optimizer}, {"steps", r.optimizer_steps}, {"state", r.state_names}}},
      {"rng", {{"dropout_generators", r.rng}}},
      {"loss_scale", nullptr},
      {"config", r.config},
      {"pieces", pieces},
  };
  if (r.loss_scale)
    j["loss_scale"] = {{"scale", r.loss_scale->scale},
                       {"cur_iter", r.loss_scale->cur_iter},
                       {"last_overflow_iter", r.loss_scale->last_overflow_iter},
                       {"cur_hysteresis", r.loss_scale->cur_hysteresis}};
  return j.dump(1) + "\n";
}

RankRecord record_from_json(const std::string& text, const std::string& file) {
  RankRecord r;
  try {
    const json j = json::parse(text);
    MS_CHECK(j.at("format") == kFormat && j.at("version") == kVersion, "not a ", kFormat,
             " version ", kVersion, " record");
    r.rank = j.at("rank").get<int>();
    r.world_size = j.at("world_size").get<int>();
    MS_CHECK(r.world_size >= 1 && r.rank >= 0 && r.rank < r.world_size, "rank ", r.rank,
             " of world_size ", r.world_size, " is out of range");
    r.step = j.at("step").get<int64_t>();
    MS_CHECK(r.step >= 0, "step ", r.step, " is negative");
    r.skipped_steps = j.value("skipped_steps", int64_t{0});
    MS_CHECK(r.skipped_steps >= 0 && r.skipped_steps <= r.step, "skipped_steps ", r.skipped_steps,
             " is not in [0, step ", r.step, "]");
    const json& l = j.at("layout");
    r.layout = {l.at("dp").get<int>(),
                l.at("tp").get<int>(),
                l.at("pp").get<int>(),
                l.at("zero_stage").get<int>(),
                l.at("virtual_stages").get<int>(),
                l.at("sequence_parallel").get<bool>(),
                l.at("dp_rank").get<int>(),
                l.at("tp_rank").get<int>(),
                l.at("pp_rank").get<int>()};
    const CheckpointLayout& L = r.layout;
    MS_CHECK(L.dp >= 1 && L.tp >= 1 && L.pp >= 1 && int64_t{L.dp} * L.tp * L.pp == r.world_size,
             "layout dp ", L.dp, " × tp ", L.tp, " × pp ", L.pp, " is not world_size ",
             r.world_size);
    MS_CHECK(L.tp_rank >= 0 && L.tp_rank < L.tp && L.dp_rank >= 0 && L.dp_rank < L.dp &&
                 L.pp_rank >= 0 && L.pp_rank < L.pp,
             "layout ranks (dp ", L.dp_rank, ", tp ", L.tp_rank, ", pp ", L.pp_rank,
             ") are out of range");
    const json& m = j.at("model");
    r.model.vocab_size = m.at("vocab_size").get<int64_t>();
    r.model.block_size = m.at("block_size").get<int64_t>();
    r.model.n_layer = m.at("n_layer").get<int64_t>();
    r.model.n_head = m.at("n_head").get<int64_t>();
    r.model.n_embd = m.at("n_embd").get<int64_t>();
    r.model.dropout = m.at("dropout").get<double>();
    const json& o = j.at("optimizer");
    r.optimizer = o.at("name").get<std::string>();
    r.optimizer_steps = o.at("steps").get<int64_t>();
    r.state_names = o.at("state").get<std::vector<std::string>>();
    r.rng = j.at("rng").at("dropout_generators").get<std::vector<uint64_t>>();
    if (!j.at("loss_scale").is_null()) {
      const json& s = j.at("loss_scale");
      r.loss_scale = LossScalerState{s.at("scale").get<double>(), s.at("cur_iter").get<int64_t>(),
                                     s.at("last_overflow_iter").get<int64_t>(),
                                     s.at("cur_hysteresis").get<int>()};
    }
    r.config = j.at("config").get<std::map<std::string, std::string>>();
    for (const json& p : j.at("pieces"))
      r.pieces.push_back({p.at("name").get<std::string>(), shape_from(p.at("local_shape")),
                          p.at("begin").get<int64_t>(), p.at("end").get<int64_t>()});
  } catch (const json::exception& e) {
    throw Error(str_cat("checkpoint: '", file, "' is not a valid rank record: ", e.what()));
  } catch (const Error& e) {
    throw Error(str_cat("checkpoint: '", file, "': ", e.what()));
  }
  return r;
}

FullState read_full_state(const std::string& tag_dir) {
  std::error_code ec;
  MS_CHECK(fs::is_directory(tag_dir, ec), "checkpoint: '", tag_dir, "' is not a directory");
  MS_CHECK(fs::exists(fs::path(tag_dir) / "COMPLETE", ec), "checkpoint: '", tag_dir,
           "' is incomplete: it has no COMPLETE marker (the save was interrupted, or is still "
           "running); resume from an earlier tag");
  FullState st;
  st.tag_dir = tag_dir;
  const std::string first = rank_file_stem(tag_dir, 0) + ".json";
  st.saved = record_from_json(read_text(first, "rank file"), first);
  const RankRecord& s0 = st.saved;
  const int tp = s0.layout.tp;

  // The model the checkpoint holds: names, serial shapes, and how tp cut them.
  MS_CHECK(s0.model.vocab_size > 0 && s0.model.block_size > 0 && s0.model.n_layer > 0 &&
               s0.model.n_head > 0 && s0.model.n_embd > 0 && s0.model.n_embd % s0.model.n_head == 0,
           "checkpoint: '", first, "' holds an impossible model (", s0.model.describe(), ")");
  std::shared_ptr<GPT> shape = std::make_shared<GPT>(s0.model, 0);
  std::map<std::string, Shape> serial;
  for (const auto& [name, t] : shape->named_parameters()) {
    st.names.push_back(name);
    serial[name] = t.shape();
  }
  shape.reset();
  std::vector<std::string> kinds{"param"};
  for (const std::string& k : s0.state_names) kinds.push_back(k);

  // Per (name, slot): the local shard being assembled, per kind, and which of
  // its elements some rank gave. Replicated tensors have one slot, split ones tp.
  struct Local {
    std::map<std::string, Tensor> kind;
    std::vector<uint8_t> given;
    int from_rank = -1;
  };
  std::map<std::string, std::vector<Local>> locals;
  for (const std::string& name : st.names) {
    const TpSplit split = tp_split_of(name);
    const int slots = split == TpSplit::Replicated ? 1 : tp;
    const Shape ls = local_shape_of(serial[name], split, tp);
    for (int i = 0; i < slots; ++i) {
      Local l;
      for (const std::string& k : kinds) l.kind[k] = zeros(ls);
      l.given.assign(static_cast<size_t>(shape_numel(ls)), 0);
      locals[name].push_back(std::move(l));
    }
  }

  st.rng.resize(s0.world_size);
  for (int r = 0; r < s0.world_size; ++r) {
    const std::string stem = rank_file_stem(tag_dir, r);
    const RankRecord rec =
        r == 0 ? s0 : record_from_json(read_text(stem + ".json", "rank file"), stem + ".json");
    auto agrees = [&](bool same, const char* what) {
      MS_CHECK(same, "checkpoint: '", stem, ".json' disagrees with rank 0 on the ", what,
               ": the folder mixes files of different saves");
    };
    agrees(rec.rank == r, "rank number");
    agrees(rec.world_size == s0.world_size && rec.step == s0.step, "world size or step");
    agrees(rec.layout.dp == s0.layout.dp && rec.layout.tp == tp && rec.layout.pp == s0.layout.pp &&
               rec.layout.zero_stage == s0.layout.zero_stage,
           "layout");
    agrees(rec.model.describe() == s0.model.describe(), "model shape");
    agrees(rec.optimizer == s0.optimizer && rec.state_names == s0.state_names &&
               rec.optimizer_steps == s0.optimizer_steps,
           "optimizer");
    st.rng[r] = rec.rng;
    const SafetensorsFile file = [&] {
      read_text(stem + ".safetensors", "rank file");  // a clear message when it is missing
      return load_safetensors(stem + ".safetensors");
    }();
    size_t used = 0;
    for (const RankRecord::Piece& p : rec.pieces) {
      const std::string where = str_cat("checkpoint: '", stem, ".json': piece '", p.name, "'");
      auto it = locals.find(p.name);
      MS_CHECK(it != locals.end(), where, " is no parameter of the model (", s0.model.describe(),
               ")");
      const TpSplit split = tp_split_of(p.name);
      const Shape want = local_shape_of(serial[p.name], split, tp);
      MS_CHECK(p.local_shape == want, where, " has shard shape ", shape_str(p.local_shape), "; tp ",
               tp, " cuts the model's ", shape_str(serial[p.name]), " into ", shape_str(want));
      Local& l = it->second[split == TpSplit::Replicated ? 0 : rec.layout.tp_rank];
      const int64_t n = shape_numel(want);
      MS_CHECK(p.begin >= 0 && p.begin <= p.end && p.end <= n, where, " claims elements [", p.begin,
               ", ", p.end, ") of a shard of ", n);
      for (int64_t e = p.begin; e < p.end; ++e) {
        MS_CHECK(!l.given[e], where, " gives element ", e, " again (rank ", l.from_rank,
                 " gave it already)");
        l.given[e] = 1;
      }
      l.from_rank = r;
      for (const std::string& k : kinds) {
        const std::string key = k + "/" + p.name;
        auto t = file.tensors.find(key);
        MS_CHECK(t != file.tensors.end(), "checkpoint: '", stem, ".safetensors' lacks '", key,
                 "', which its .json lists");
        MS_CHECK(t->second.dtype() == DType::F32 && t->second.dim() == 1 &&
                     t->second.numel() == p.end - p.begin,
                 "checkpoint: '", stem, ".safetensors': '", key, "' holds ",
                 shape_str(t->second.shape()), " ", dtype_name(t->second.dtype()),
                 ", not the f32 [", p.end - p.begin, "] its .json claims");
        const float* src = t->second.data<float>();
        std::copy(src, src + (p.end - p.begin), l.kind[k].data<float>() + p.begin);
        ++used;
      }
    }
    MS_CHECK(used == file.tensors.size(), "checkpoint: '", stem, ".safetensors' holds ",
             file.tensors.size(), " tensors, its .json lists ", used);
  }

  for (const std::string& name : st.names) {
    std::vector<Local>& ls = locals[name];
    for (size_t slot = 0; slot < ls.size(); ++slot) {
      const auto& g = ls[slot].given;
      const auto miss = std::find(g.begin(), g.end(), 0);
      MS_CHECK(miss == g.end(), "checkpoint: '", tag_dir, "': no rank file holds element ",
               miss - g.begin(), " of '", name, "'",
               ls.size() > 1 ? str_cat(" (tp shard ", slot, ")") : "",
               ": the checkpoint is damaged");
    }
    for (const std::string& k : kinds) {
      std::vector<Tensor> shards;
      for (Local& l : ls) shards.push_back(l.kind[k]);
      st.tensors[name][k] =
          shards.size() == 1 ? shards[0] : unshard_param(shards, tp_split_of(name));
    }
  }
  return st;
}

std::shared_ptr<GPT> full_state_model(const FullState& state) {
  auto model = std::make_shared<GPT>(state.saved.model, 0);
  NoGradGuard no_grad;
  for (const auto& [name, t] : model->named_parameters()) {
    const Tensor& src = state.tensors.at(name).at("param");
    MS_ASSERT(src.shape() == t.shape(), "checkpoint: '", name, "' shape");
    std::copy(src.data<float>(), src.data<float>() + src.numel(), t.data<float>());
  }
  return model;
}

}  // namespace ms
