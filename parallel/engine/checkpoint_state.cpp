#include "parallel/engine/checkpoint_state.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/safetensors.h"
#include "parallel/engine/checkpoint_folder.h"
#include "parallel/tp/shard.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxRanks = kCheckpointMaxRanks;
constexpr int64_t kMaxDim = kCheckpointMaxDim;
constexpr uintmax_t kMaxRecordBytes = kCheckpointMaxRecordBytes;

void check_present(const std::string& path, const std::string& what) {
  std::error_code ec;
  MS_CHECK(fs::is_regular_file(path, ec), "checkpoint: ", what, " '", path,
           "' is missing (a checkpoint folder holds COMPLETE and rank_NNNNN.{json,safetensors} "
           "for every rank that saved it)");
}

std::string read_text(const std::string& path, const std::string& what) {
  check_present(path, what);
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  MS_CHECK(!ec && size <= kMaxRecordBytes, "checkpoint: ", what, " '", path, "' holds ", size,
           " bytes; a rank record is at most ", kMaxRecordBytes, " (it is not one)");
  std::ifstream f(path, std::ios::binary);
  MS_CHECK(f.good(), "checkpoint: cannot read ", what, " '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The shard shape tp rank r of t holds of a serial parameter (shard.h's table).
Shape local_shape_of(const Shape& serial, TpSplit split, int t) {
  Shape s = serial;
  if (t == 1 || split == TpSplit::Replicated) return s;
  int64_t& d = split == TpSplit::Rows ? s.front() : s.back();
  d /= t;
  return s;
}

// What the rank files' tensors are, from their safetensors headers alone:
// elements per kind ("param", "exp_avg"...) and the block indices of h.<i>.
// The JSON's sizes are checked against it before anything is allocated by them.
struct TensorCensus {
  std::map<std::string, long double> elements;
  std::set<int64_t> layers;
};

void add_header(const std::string& path, TensorCensus& census) {
  check_present(path, "rank file");
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  std::ifstream f(path, std::ios::binary);
  uint64_t n = 0;
  unsigned char len[8] = {};
  bool ok = !ec && size >= 8 && f.read(reinterpret_cast<char*>(len), 8).good();
  for (int i = 0; i < 8; ++i) n |= uint64_t{len[i]} << (8 * i);
  ok = ok && n <= size - 8 && n <= kMaxRecordBytes;
  json header;
  long double bytes = 0;
  if (ok) {
    std::string text(n, '\0');
    ok = f.read(text.data(), static_cast<std::streamsize>(n)).good();
    header = json::parse(text, nullptr, false);
    ok = ok && header.is_object();
  }
  if (ok) {
    for (const auto& [key, t] : header.items()) {
      if (key == "__metadata__") continue;
      long double numel = 1;
      ok = ok && t.is_object() && t.contains("shape") && t["shape"].is_array();
      if (!ok) break;
      for (const json& d : t["shape"]) {
        ok = ok && d.is_number_integer() && d.get<int64_t>() >= 0;
        if (ok) numel *= d.get<int64_t>();
      }
      bytes += numel * 4;
      const std::string kind = key.substr(0, key.find('/'));
      const std::string name = key.substr(std::min(key.size(), kind.size() + 1));
      census.elements[kind] += numel;
      if (name.rfind("h.", 0) == 0) {
        const int64_t layer = std::strtoll(name.c_str() + 2, nullptr, 10);
        if (layer >= 0 && layer < kMaxDim) census.layers.insert(layer);
      }
    }
    ok = ok && bytes <= static_cast<long double>(size - 8 - n);
  }
  if (!ok) {
    load_safetensors(path);  // a damaged or hostile file: its reader names the problem
    throw Error(str_cat("checkpoint: '", path, "' is not a readable safetensors file"));
  }
}

// GPT-2's parameter count (tied lm_head): wte V·C, wpe T·C, L blocks of
// 12C² + 13C (ln_1, c_attn, attn c_proj, ln_2, c_fc, mlp c_proj), ln_f 2C.
long double gpt_parameter_count(const GPTConfig& m) {
  const long double C = m.n_embd;
  long double total = m.vocab_size * C + m.block_size * C + m.n_layer * (12 * C * C + 13 * C) + 2 * C;
  if (m.moe.enabled())  // nn/moe.h: E MLPs and a C×E router in place of one MLP
    total += (m.n_layer / m.moe.every) *
             ((m.moe.experts - 1) * (8 * C * C + 5 * C) + C * static_cast<long double>(m.moe.experts));
  return total;
}

// The model and optimizer state rank 0's record claims, against the tensors
// the rank files hold (a lying n_layer would otherwise size the model).
void check_against_tensors(const RankRecord& s0, const TensorCensus& c, const std::string& file) {
  const auto& el = c.elements;
  const long double params = el.count("param") ? el.at("param") : 0;
  if (!c.layers.empty()) {
    const int64_t layers = *c.layers.rbegin() + 1;
    MS_CHECK(s0.model.n_layer == layers, "checkpoint: '", file, "': model.n_layer ",
             s0.model.n_layer, ", but the rank files hold the tensors of ", layers,
             " layer(s) (h.0 to h.", layers - 1, "): it should be ", layers);
  }
  const long double want = gpt_parameter_count(s0.model);
  // Somewhat more is a damaged checkpoint (a piece missing), which the
  // element-by-element tiling check below names precisely; far more is a
  // lying shape, and would size the model beyond anything the files hold.
  MS_CHECK(want <= 2 * params + (1 << 20), "checkpoint: '", file, "': model ", s0.model.describe(), " has ",
           static_cast<double>(want), " parameters, but the rank files hold only ",
           static_cast<double>(params),
           ": model.vocab_size, model.block_size or model.n_embd does not match the tensors");
  for (const std::string& k : s0.state_names) {
    const long double have = el.count(k) ? el.at(k) : 0;
    MS_CHECK(k != "param" && have == params, "checkpoint: '", file, "': optimizer.state lists '",
             k, "', but the rank files hold ", static_cast<double>(have),
             " elements of it, not the model's ", static_cast<double>(params));
  }
}

// The ranks the folder holds files of: 1 + the highest N of any
// rank_N.json or rank_N.safetensors (a missing file of a lower rank is named
// precisely later).
int count_rank_files(const std::string& tag_dir) {
  long n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(tag_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const size_t dot = name.find('.');
    if (name.rfind("rank_", 0) != 0 || dot == std::string::npos || dot == 5 || dot > 12 ||
        name.find_first_not_of("0123456789", 5) != dot)
      continue;
    const std::string ext = name.substr(dot);
    if (ext == ".json" || ext == ".safetensors")
      n = std::max(n, std::stol(name.substr(5, dot - 5)) + 1);
  }
  return static_cast<int>(std::min<long>(n, kMaxRanks + 1));
}

}  // namespace

FullState read_full_state(const std::string& tag_dir) {
  std::error_code ec;
  MS_CHECK(fs::is_directory(tag_dir, ec), "checkpoint: '", tag_dir, "' is not a directory");
  MS_CHECK(fs::exists(fs::path(tag_dir) / "COMPLETE", ec), "checkpoint: '", tag_dir,
           "' is incomplete: it has no COMPLETE marker (the save was interrupted, or is still "
           "running); resume from an earlier tag");
  FullState st;
  st.tag_dir = tag_dir;
  const std::string first = rank_file_stem(tag_dir, 0) + ".json";
  const std::string text0 = read_text(first, "rank file");
  // Nothing is sized by the JSON before it is checked against the folder:
  // world_size (and so dp, tp, pp) against the rank files present, first of
  // all; the save run against COMPLETE's; the model and its state against
  // the tensors.
  const int files = count_rank_files(tag_dir);
  if (const json j = json::parse(text0, nullptr, false);
      j.is_object() && j.contains("world_size") && j["world_size"].is_number_integer())
    MS_CHECK(j["world_size"].get<int64_t>() == files, "checkpoint: '", first, "': world_size ",
             j["world_size"].dump(), ", but '", tag_dir, "' holds the files of ", files,
             " rank(s) (rank_NNNNN.json, .safetensors): it should be ", files);
  st.saved = record_from_json(text0, first);
  const RankRecord& s0 = st.saved;
  const int tp = s0.layout.tp;
  const std::string run = complete_run_id(tag_dir);
  MS_CHECK(s0.run_id == run, "checkpoint: '", first, "' was written by save run '", s0.run_id,
           "', but '", tag_dir, "/COMPLETE' records run '", run,
           "': the folder mixes files of different saves (two jobs saving into one folder?); "
           "resume from another tag");
  TensorCensus census;
  for (int r = 0; r < s0.world_size; ++r)
    add_header(rank_file_stem(tag_dir, r) + ".safetensors", census);

  // The model the checkpoint holds: names, serial shapes, and how tp cut them.
  MS_CHECK(s0.model.n_embd % s0.model.n_head == 0, "checkpoint: '", first,
           "' holds an impossible model (", s0.model.describe(), ")");
  check_against_tensors(s0, census, first);
  std::shared_ptr<GPT> shape = std::make_shared<GPT>(s0.model, 0);
  std::map<std::string, Shape> serial;
  int64_t count = 0;
  for (const auto& [name, t] : shape->named_parameters()) {
    st.names.push_back(name);
    serial[name] = t.shape();
    count += t.numel();
  }
  shape.reset();
  MS_ASSERT(count == gpt_parameter_count(s0.model), "checkpoint: gpt_parameter_count is ",
            static_cast<double>(gpt_parameter_count(s0.model)), ", the model has ", count);
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
    MS_CHECK(rec.run_id == run, "checkpoint: '", stem, ".json' was written by save run '",
             rec.run_id, "', but '", first, "' and COMPLETE by run '", run,
             "': the folder mixes rank files of different saves (two jobs saving into one "
             "folder?); resume from another tag");
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
      check_present(stem + ".safetensors", "rank file");  // a clear message when it is missing
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
        const float* src = t->second.host_data<float>();
        std::copy(src, src + (p.end - p.begin), l.kind[k].host_data<float>() + p.begin);
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
    std::copy(src.host_data<float>(), src.host_data<float>() + src.numel(), t.host_data<float>());
  }
  return model;
}

}  // namespace ms
