// GPT <-> safetensors with Hugging Face GPT-2 names. Our Linear already stores
// weights [in, out] like GPT-2's Conv1D, so names map one to one.
//
// A weights file comes from outside: its tensors fix the model's shape, its
// metadata is only believed where it agrees with them, and the model is
// allocated only after every expected tensor is found with the right shape.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "autograd/grad_mode.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"

namespace ms {

namespace {

// Parameter names and shapes, in the order GPT registers them (so the first
// mismatch reported is the first parameter, wte).
using Spec = std::vector<std::pair<std::string, Shape>>;

// Names and metadata values in messages: short, and on one line whatever the file holds.
std::string shown(const std::string& s) {
  std::string out;
  for (char c : s.size() <= 60 ? s : s.substr(0, 57)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return s.size() <= 60 ? out : out + "...";
}

// Names in HF checkpoints that are buffers or tied copies, not parameters.
bool ignorable(const std::string& name) {
  auto ends_with = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with("attn.bias") || ends_with("attn.masked_bias") || name == "lm_head.weight";
}

// GPT2LMHeadModel files say "transformer.h.0...", GPT2Model files "h.0...".
// A file with both spellings of one name is ambiguous, not ours to pick from.
std::map<std::string, Tensor> strip_prefix(const std::map<std::string, Tensor>& in,
                                           const std::string& path) {
  const std::string prefix = "transformer.";
  std::map<std::string, Tensor> out;
  std::map<std::string, std::string> original;
  for (const auto& [name, t] : in) {
    std::string key = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
    auto [it, inserted] = original.emplace(key, name);
    MS_CHECK(inserted, "GPT weights '", path, "': tensors '", shown(it->second), "' and '",
             shown(name), "' both name the parameter '", shown(key), "'; keep one");
    out.emplace(key, t);
  }
  return out;
}

// Strict: "4xyz", " 4", "+4" and "4.0" are errors, not 4.
std::optional<int64_t> metadata_int(const std::map<std::string, std::string>& meta,
                                    const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) return std::nullopt;
  const std::string& s = it->second;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  MS_CHECK(ec == std::errc() && end == s.data() + s.size() && v > 0, "GPT weights '", path,
           "': metadata ", key, " = '", shown(s), "' is not a positive integer");
  return v;
}

// The parameters GPT(cfg) registers, by Hugging Face name. GPT's constructor
// is the source of truth; from_safetensors asserts the two agree.
Spec expected_parameters(const GPTConfig& cfg) {
  const int64_t C = cfg.n_embd;
  Spec spec = {{"wte.weight", {cfg.vocab_size, C}}, {"wpe.weight", {cfg.block_size, C}}};
  const std::pair<const char*, Shape> block[] = {{"ln_1.weight", {C}},
                                                 {"ln_1.bias", {C}},
                                                 {"attn.c_attn.weight", {C, 3 * C}},
                                                 {"attn.c_attn.bias", {3 * C}},
                                                 {"attn.c_proj.weight", {C, C}},
                                                 {"attn.c_proj.bias", {C}},
                                                 {"ln_2.weight", {C}},
                                                 {"ln_2.bias", {C}},
                                                 {"mlp.c_fc.weight", {C, 4 * C}},
                                                 {"mlp.c_fc.bias", {4 * C}},
                                                 {"mlp.c_proj.weight", {4 * C, C}},
                                                 {"mlp.c_proj.bias", {C}}};
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const std::string h = "h." + std::to_string(i) + ".";
    const bool moe = cfg.moe.is_moe_block(i);
    for (const auto& [name, shape] : block) {
      if (moe && std::string(name).rfind("mlp.", 0) == 0) continue;
      spec.emplace_back(h + name, shape);
    }
    if (!moe) continue;
    // nn/moe.h: the router (C, E), then E GPT-2 MLPs.
    spec.emplace_back(h + "mlp.router.weight", Shape{C, cfg.moe.experts});
    for (int64_t e = 0; e < cfg.moe.experts; ++e)
      for (const auto& [name, shape] : block)
        if (std::string(name).rfind("mlp.", 0) == 0)
          spec.emplace_back(h + "mlp.experts." + std::to_string(e) + "." + (name + 4), shape);
  }
  spec.emplace_back("ln_f.weight", Shape{C});
  spec.emplace_back("ln_f.bias", Shape{C});
  return spec;
}

// Every parameter present with its shape and a float dtype; nothing unknown.
void check_tensors(const std::string& path, const Spec& spec,
                   const std::map<std::string, Tensor>& tensors, const std::string& model) {
  std::set<std::string> known;
  for (const auto& [name, shape] : spec) {
    known.insert(name);
    auto it = tensors.find(name);
    MS_CHECK(it != tensors.end(), "GPT weights '", path, "': missing tensor '", name, "' ",
             shape_str(shape), " (a parameter of ", model, ")");
    MS_CHECK(it->second.shape() == shape, "GPT weights '", path, "': '", name, "' has shape ",
             shape_str(it->second.shape()), " but the model expects ", shape_str(shape));
    MS_CHECK(is_float_dtype(it->second.dtype()), "GPT weights '", path, "': '", name,
             "' has dtype ", dtype_name(it->second.dtype()), "; expected F32, F16 or BF16");
  }
  for (const auto& [name, t] : tensors)
    MS_CHECK(known.count(name) || ignorable(name), "GPT weights '", path, "': unexpected tensor '",
             shown(name), "' ", shape_str(t.shape()), " (not a parameter of ", model, ")");
}

int64_t count_non_finite(const Tensor& t) {
  int64_t bad = 0;
  if (t.dtype() == DType::F32 && t.is_contiguous()) {
    const float* p = t.host_data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) bad += !std::isfinite(p[i]);
  } else {
    for (double v : t.to_vector()) bad += !std::isfinite(v);
  }
  return bad;
}

// Copies the checked tensors into the model (F16/BF16/F64 convert to its
// dtype). A NaN or Inf would load silently and surface steps later as a NaN
// loss, so each tensor holding any is named once, on stderr.
void copy_weights(Module& model, const std::map<std::string, Tensor>& tensors,
                  const std::string& path, bool warn_non_finite) {
  NoGradGuard no_grad;
  for (auto& [name, param] : model.named_parameters()) {
    copy_(param, tensors.at(name));
    if (!warn_non_finite) continue;
    if (int64_t bad = count_non_finite(param))
      std::fprintf(stderr,
                   "warning: GPT weights '%s': tensor '%s' has %lld non-finite values (NaN or "
                   "Inf) of %lld\n",
                   path.c_str(), name.c_str(), static_cast<long long>(bad),
                   static_cast<long long>(param.numel()));
  }
}

}  // namespace

std::shared_ptr<GPT> GPT::from_safetensors(const std::string& path) {
  return from_safetensors(path, LoadOptions{});
}

std::shared_ptr<GPT> GPT::from_safetensors(const std::string& path, const LoadOptions& opts) {
  SafetensorsFile file = ms::load_safetensors(path);
  std::map<std::string, Tensor> tensors = strip_prefix(file.tensors, path);
  auto need_2d = [&](const std::string& name) -> const Tensor& {
    auto it = tensors.find(name);
    MS_CHECK(it != tensors.end(), "GPT weights '", path, "': missing tensor '", name, "'");
    MS_CHECK(it->second.dim() == 2, "GPT weights '", path, "': '", name, "' must be 2-D, got ",
             shape_str(it->second.shape()));
    return it->second;
  };
  const Tensor& wte = need_2d("wte.weight");
  const Tensor& wpe = need_2d("wpe.weight");

  // The shape, from the tensors alone.
  GPTConfig cfg;
  cfg.vocab_size = wte.shape()[0];
  cfg.n_embd = wte.shape()[1];
  cfg.block_size = wpe.shape()[0];
  cfg.n_layer = 0;
  while (tensors.count("h." + std::to_string(cfg.n_layer) + ".ln_1.weight")) ++cfg.n_layer;
  MS_CHECK(cfg.n_layer > 0, "GPT weights '", path,
           "': no transformer blocks (no tensor 'h.0.ln_1.weight')");
  const std::string wte_is = "wte.weight " + shape_str(wte.shape());
  const std::string wpe_is = "wpe.weight " + shape_str(wpe.shape());
  const std::pair<const char*, std::pair<int64_t, std::string>> derived[] = {
      {"n_layer", {cfg.n_layer, str_cat("blocks h.0 to h.", cfg.n_layer - 1)}},
      {"n_embd", {cfg.n_embd, wte_is}},
      {"vocab_size", {cfg.vocab_size, wte_is}},
      {"block_size", {cfg.block_size, wpe_is}}};
  for (const auto& [key, value] : derived) {
    std::optional<int64_t> meta = metadata_int(file.metadata, key, path);
    MS_CHECK(!meta || *meta == value.first, "GPT weights '", path, "': metadata ", key, " ", *meta,
             " disagrees with the tensors (", key, " ", value.first, " from ", value.second, ")");
  }

  // The head count is invisible in the shapes (the heads are slices of c_attn).
  const int64_t C = cfg.n_embd;
  std::optional<int64_t> meta_head = metadata_int(file.metadata, "n_head", path);
  std::string guess;  // said once the file has loaded, not before an error
  if (opts.n_head) {
    MS_CHECK(*opts.n_head > 0 && C % *opts.n_head == 0, "GPT weights '", path,
             "': ", opts.n_head_name, " ", *opts.n_head, " does not divide n_embd ", C, " (",
             wte_is, ")");
    MS_CHECK(!meta_head || *meta_head == *opts.n_head, "GPT weights '", path,
             "': ", opts.n_head_name, " ", *opts.n_head, " contradicts the file's metadata n_head ",
             meta_head.value_or(0));
    cfg.n_head = *opts.n_head;
  } else if (meta_head) {
    MS_CHECK(C % *meta_head == 0, "GPT weights '", path, "': metadata n_head ", *meta_head,
             " does not divide n_embd ", C, " (", wte_is, ")");
    cfg.n_head = *meta_head;
  } else {
    cfg.n_head = std::max<int64_t>(C / 64, 1);
    MS_CHECK(C % cfg.n_head == 0, "GPT weights '", path,
             "': no n_head in the metadata, and GPT-2's 64-wide heads give ", cfg.n_head,
             ", which does not divide n_embd ", C, "; give the head count explicitly");
    guess = str_cat("GPT weights '", path,
                    "': no n_head in the metadata; assuming GPT-2's 64-wide heads: ", cfg.n_head,
                    " head(s) for n_embd ", C);
  }
  if (opts.dropout) cfg.dropout = *opts.dropout;
  if (opts.attn_dropout) cfg.attn_dropout = *opts.attn_dropout;
  // MoE blocks (nn/moe.h), from the tensors: the first block with a router
  // gives moe.every, its experts.<e> give E; the gate's settings come from
  // the metadata save_safetensors writes (defaults otherwise).
  for (int64_t i = 0; i < cfg.n_layer && !cfg.moe.enabled(); ++i) {
    const std::string h = "h." + std::to_string(i) + ".mlp.";
    if (!tensors.count(h + "router.weight")) continue;
    cfg.moe.every = i + 1;
    while (tensors.count(h + "experts." + std::to_string(cfg.moe.experts) + ".c_fc.weight"))
      ++cfg.moe.experts;
    MS_CHECK(cfg.moe.experts > 0, "GPT weights '", path, "': '", h, "router.weight' without ",
             h, "experts.0.c_fc.weight");
    if (auto k = metadata_int(file.metadata, "moe_top_k", path)) cfg.moe.top_k = *k;
    if (auto m = metadata_int(file.metadata, "moe_min_capacity", path)) cfg.moe.min_capacity = *m;
    auto real = [&](const char* key, double& out) {
      auto it = file.metadata.find(key);
      if (it == file.metadata.end()) return;
      char* end = nullptr;
      out = std::strtod(it->second.c_str(), &end);
      MS_CHECK(!it->second.empty() && *end == 0, "GPT weights '", path, "': metadata ", key,
               " = '", shown(it->second), "' is not a number");
    };
    real("moe_capacity_factor", cfg.moe.capacity_factor);
    real("moe_aux_loss_coef", cfg.moe.aux_loss_coef);
    if (auto it = file.metadata.find("moe_drop_tokens"); it != file.metadata.end())
      cfg.moe.drop_tokens = it->second != "0";
  }
  cfg.validate();

  const Spec spec = expected_parameters(cfg);
  check_tensors(path, spec, tensors, cfg.describe());
  // Only now, with every shape matched against tensors the file really holds, allocate.
  auto model = std::make_shared<GPT>(cfg, 0);
  const auto params = model->named_parameters();
  MS_ASSERT(params.size() == spec.size(), "expected_parameters disagrees with GPT's constructor");
  for (size_t i = 0; i < spec.size(); ++i)
    MS_ASSERT(params[i].first == spec[i].first && params[i].second.shape() == spec[i].second,
              "expected_parameters disagrees with GPT's constructor at ", params[i].first);
  copy_weights(*model, tensors, path, opts.warn_non_finite);
  if (!guess.empty() && opts.note) opts.note(guess);
  if (!guess.empty() && !opts.note) std::fprintf(stderr, "note: %s\n", guess.c_str());
  return model;
}

void GPT::load_safetensors(const std::string& path) {
  std::map<std::string, Tensor> tensors = strip_prefix(ms::load_safetensors(path).tensors, path);
  Spec spec;
  for (const auto& [name, param] : named_parameters()) spec.emplace_back(name, param.shape());
  check_tensors(path, spec, tensors, cfg_.describe());
  copy_weights(*this, tensors, path, true);
}

void GPT::save_safetensors(const std::string& path) const {
  std::map<std::string, Tensor> tensors;
  for (auto& [name, param] : named_parameters()) tensors[name] = param;
  save_safetensors(path, tensors);
}

void GPT::save_safetensors(const std::string& path,
                           const std::map<std::string, Tensor>& values) const {
  std::map<std::string, Tensor> tensors;
  for (auto& [name, param] : named_parameters()) {
    auto it = values.find(name);
    MS_CHECK(it != values.end(), "GPT::save_safetensors '", path, "': no value for ", name);
    MS_CHECK(it->second.shape() == param.shape(), "GPT::save_safetensors '", path, "': ", name,
             " has shape ", shape_str(it->second.shape()), ", the model's is ",
             shape_str(param.shape()));
    // A whole-model file must hold whole tensors: one rank's shard (a tp
    // shard, a ZeRO partition not yet gathered) would load as the full
    // weight, zeros or another block where the other ranks' parts belong.
    for (int a = 0; a < kMeshAxes; ++a)
      refuse_placement(it->second, static_cast<MeshAxis>(a), Placement::Kind::Sharded,
                       "saving a shard as if it were whole",
                       "the file would hold one rank's block where the whole tensor belongs (a "
                       "missing gather before the save?)");
    tensors[name] = it->second;
  }
  MS_CHECK(values.size() == tensors.size(), "GPT::save_safetensors '", path, "': ",
           values.size() - tensors.size(), " value(s) name no parameter of the model");
  std::map<std::string, std::string> meta{{"n_layer", std::to_string(cfg_.n_layer)},
                                          {"n_head", std::to_string(cfg_.n_head)},
                                          {"n_embd", std::to_string(cfg_.n_embd)},
                                          {"block_size", std::to_string(cfg_.block_size)},
                                          {"vocab_size", std::to_string(cfg_.vocab_size)}};
  if (cfg_.moe.enabled()) {  // what the tensors cannot say (from_safetensors reads them back)
    meta["moe_top_k"] = std::to_string(cfg_.moe.top_k);
    meta["moe_capacity_factor"] = exact_str(cfg_.moe.capacity_factor);
    meta["moe_min_capacity"] = std::to_string(cfg_.moe.min_capacity);
    meta["moe_drop_tokens"] = cfg_.moe.drop_tokens ? "1" : "0";
    meta["moe_aux_loss_coef"] = exact_str(cfg_.moe.aux_loss_coef);
  }
  ms::save_safetensors(path, tensors, meta);
}

}  // namespace ms
