// Rank records (DIR/TAG/rank_NNNNN.json) to and from JSON: every number
// type- and range-checked as it is read, so a damaged or hostile record is an
// error naming its key, never a size the reader trusts.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "parallel/engine/checkpoint_state.h"
#include "tensor/error.h"

namespace ms {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "minispeed-checkpoint";
constexpr int kVersion = 2;  // 2: run_id, and COMPLETE records it
constexpr int64_t kMaxRanks = kCheckpointMaxRanks;
constexpr int64_t kMaxDim = kCheckpointMaxDim;

Shape shape_from(const json& j) {
  Shape s;
  for (const json& d : j) {
    const int64_t n = d.get<int64_t>();
    MS_CHECK(n >= 0, "negative dimension ", n);
    s.push_back(n);
  }
  return s;
}

// j[key] as an integer in [lo, hi]; `name` is the key's dotted path for errors.
int64_t int_in(const json& j, const char* key, const std::string& name, int64_t lo, int64_t hi,
               const std::string& why = "") {
  const json& v = j.at(key);
  MS_CHECK(v.is_number_integer() && !(v.is_number_unsigned() &&
                                       v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())),
           name, " ", v.dump(), " is not an integer in [", lo, ", ", hi, "]", why);
  const int64_t n = v.get<int64_t>();
  MS_CHECK(n >= lo && n <= hi, name, " ", n, " is out of range: it should be in [", lo, ", ", hi,
           "]", why);
  return n;
}

// j[key] as a finite number in [lo, hi].
double real_in(const json& j, const char* key, const std::string& name, double lo, double hi) {
  const json& v = j.at(key);
  MS_CHECK(v.is_number(), name, " ", v.dump(), " is not a number");
  const double x = v.get<double>();
  MS_CHECK(std::isfinite(x) && x >= lo && x <= hi, name, " ", x,
           " is out of range: it should be in [", lo, ", ", hi, "]");
  return x;
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
      {"run_id", r.run_id},
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
        {"pp_rank", l.pp_rank},
        {"cp", l.cp}}},
      {"model",
       {{"vocab_size", r.model.vocab_size},
        {"block_size", r.model.block_size},
        {"n_layer", r.model.n_layer},
        {"n_head", r.model.n_head},
        {"n_embd", r.model.n_embd},
        {"dropout", r.model.dropout},
        {"attn_dropout", r.model.attn_dropout}}},
      {"optimizer",
       {{"name", r.optimizer}, {"steps", r.optimizer_steps}, {"state", r.state_names}}},
      {"rng", {{"dropout_generators", r.rng}}},
      {"loss_scale", nullptr},
      {"config", r.config},
      {"pieces", pieces},
  };
  if (r.model.moe.enabled()) {  // nn/moe.h: which blocks hold experts, and their gate
    const MoEConfig& m = r.model.moe;
    j["model"]["moe"] = {{"experts", m.experts},         {"every", m.every},
                         {"top_k", m.top_k},             {"capacity_factor", m.capacity_factor},
                         {"min_capacity", m.min_capacity}, {"drop_tokens", m.drop_tokens},
                         {"aux_loss_coef", m.aux_loss_coef}};
  }
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
    r.run_id = j.at("run_id").get<std::string>();
    r.world_size = static_cast<int>(int_in(j, "world_size", "world_size", 1, kMaxRanks));
    r.rank = static_cast<int>(int_in(j, "rank", "rank", 0, r.world_size - 1, " (world_size)"));
    r.step = int_in(j, "step", "step", 0, std::numeric_limits<int64_t>::max());
    r.skipped_steps =
        j.contains("skipped_steps")
            ? int_in(j, "skipped_steps", "skipped_steps", 0, r.step, " (0 to step)")
            : 0;
    const json& l = j.at("layout");
    const int64_t ws = r.world_size;
    auto size = [&](const char* k) {
      return static_cast<int>(int_in(l, k, str_cat("layout.", k), 1, ws, " (world_size)"));
    };
    r.layout.dp = size("dp");
    r.layout.tp = size("tp");
    r.layout.pp = size("pp");
    r.layout.zero_stage = static_cast<int>(int_in(l, "zero_stage", "layout.zero_stage", 0, 3));
    r.layout.virtual_stages =
        static_cast<int>(int_in(l, "virtual_stages", "layout.virtual_stages", 1, kMaxRanks));
    r.layout.sequence_parallel = l.at("sequence_parallel").get<bool>();
    CheckpointLayout& L = r.layout;
    MS_CHECK(int64_t{L.dp} * L.tp * L.pp == ws, "layout dp ", L.dp, " × tp ", L.tp, " × pp ", L.pp,
             " is not world_size ", ws,
             ws % (int64_t{L.dp} * L.pp) == 0
                 ? str_cat(" (with dp ", L.dp, " and pp ", L.pp, ", layout.tp should be ",
                           ws / (int64_t{L.dp} * L.pp), ")")
                 : std::string());
    auto index = [&](const char* k, int n) {
      return static_cast<int>(int_in(l, k, str_cat("layout.", k), 0, n - 1));
    };
    L.dp_rank = index("dp_rank", L.dp);
    // Written since context parallelism; older records had none (cp 1).
    L.cp = l.contains("cp") ? static_cast<int>(int_in(l, "cp", "layout.cp", 1, L.dp, " (layout.dp)"))
                            : 1;
    MS_CHECK(L.dp % L.cp == 0, "layout.cp ", L.cp, " does not divide layout.dp ", L.dp,
             " (dp counts the dp × cp ranks)");
    L.tp_rank = index("tp_rank", L.tp);
    L.pp_rank = index("pp_rank", L.pp);
    const json& m = j.at("model");
    auto dim = [&](const char* k) { return int_in(m, k, str_cat("model.", k), 1, kMaxDim); };
    r.model.vocab_size = dim("vocab_size");
    r.model.block_size = dim("block_size");
    r.model.n_layer = dim("n_layer");
    r.model.n_head = dim("n_head");
    r.model.n_embd = dim("n_embd");
    r.model.dropout = real_in(m, "dropout", "model.dropout", 0, 1);
    MS_CHECK(r.model.dropout < 1, "model.dropout 1 is out of range: it should be in [0, 1)");
    r.model.attn_dropout = real_in(m, "attn_dropout", "model.attn_dropout", 0, 1);
    MS_CHECK(r.model.attn_dropout < 1,
             "model.attn_dropout 1 is out of range: it should be in [0, 1)");
    if (m.contains("moe")) {  // absent: a dense model
      const json& e = m.at("moe");
      MoEConfig& moe = r.model.moe;
      moe.experts = int_in(e, "experts", "model.moe.experts", 1, kMaxDim);
      moe.every = int_in(e, "every", "model.moe.every", 1, r.model.n_layer, " (n_layer)");
      moe.top_k = int_in(e, "top_k", "model.moe.top_k", 1, 2);
      moe.capacity_factor = real_in(e, "capacity_factor", "model.moe.capacity_factor", 0,
                                    std::numeric_limits<double>::max());
      moe.min_capacity = int_in(e, "min_capacity", "model.moe.min_capacity", 0, kMaxDim);
      moe.drop_tokens = e.at("drop_tokens").get<bool>();
      moe.aux_loss_coef = real_in(e, "aux_loss_coef", "model.moe.aux_loss_coef", 0,
                                  std::numeric_limits<double>::max());
      moe.validate();
    }
    const json& o = j.at("optimizer");
    r.optimizer = o.at("name").get<std::string>();
    // Optimizer::state_steps counts the updates taken: at most one per step
    // (fewer where fp16 skipped some). A negative count would make AdamW's
    // bias correction 1 - beta^steps negative and the weights NaN.
    r.optimizer_steps = int_in(o, "steps", "optimizer.steps", 0, r.step, " (0 to step)");
    r.state_names = o.at("state").get<std::vector<std::string>>();
    r.rng = j.at("rng").at("dropout_generators").get<std::vector<uint64_t>>();
    if (!j.at("loss_scale").is_null()) {
      const json& s = j.at("loss_scale");
      LossScalerState ls;
      ls.scale = real_in(s, "scale", "loss_scale.scale", 0, std::numeric_limits<double>::max());
      MS_CHECK(ls.scale > 0, "loss_scale.scale 0 is out of range: it should be > 0");
      ls.cur_iter = int_in(s, "cur_iter", "loss_scale.cur_iter", 0, r.step, " (0 to step)");
      ls.last_overflow_iter = int_in(s, "last_overflow_iter", "loss_scale.last_overflow_iter", -1,
                                     ls.cur_iter, " (-1: none, to cur_iter)");
      ls.cur_hysteresis = static_cast<int>(int_in(s, "cur_hysteresis",
                                                  "loss_scale.cur_hysteresis", 1,
                                                  std::numeric_limits<int>::max()));
      r.loss_scale = ls;
    }
    r.config = j.at("config").get<std::map<std::string, std::string>>();
    for (const json& p : j.at("pieces")) {
      const int64_t begin = int_in(p, "begin", "pieces[].begin", 0, kMaxDim * kMaxDim);
      const int64_t end = int_in(p, "end", "pieces[].end", begin, kMaxDim * kMaxDim, " (begin to)");
      r.pieces.push_back({p.at("name").get<std::string>(), shape_from(p.at("local_shape")), begin,
                          end});
    }
  } catch (const json::exception& e) {
    throw Error(str_cat("checkpoint: '", file, "' is not a valid rank record: ", e.what()));
  } catch (const Error& e) {
    throw Error(str_cat("checkpoint: '", file, "': ", e.what()));
  }
  return r;
}

}  // namespace ms
