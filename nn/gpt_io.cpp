// GPT <-> safetensors with Hugging Face GPT-2 names. Our Linear already stores
// weights [in, out] like GPT-2's Conv1D, so names map one to one.
#include <set>

#include "autograd/grad_mode.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"

namespace ms {

namespace {

// Names in HF checkpoints that are buffers or tied copies, not parameters.
bool ignorable(const std::string& name) {
  auto ends_with = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with("attn.bias") || ends_with("attn.masked_bias") || name == "lm_head.weight";
}

std::map<std::string, Tensor> strip_prefix(const std::map<std::string, Tensor>& in) {
  std::map<std::string, Tensor> out;
  const std::string prefix = "transformer.";
  for (const auto& [name, t] : in)
    out[name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name] = t;
  return out;
}

int64_t metadata_int(const std::map<std::string, std::string>& meta, const std::string& key,
                     int64_t fallback) {
  auto it = meta.find(key);
  if (it == meta.end()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw Error(
        str_cat("safetensors metadata: '", key, "' = '", it->second, "' is not an integer"));
  }
}

}  // namespace

std::shared_ptr<GPT> GPT::from_safetensors(const std::string& path) {
  SafetensorsFile file = ms::load_safetensors(path);
  std::map<std::string, Tensor> tensors = strip_prefix(file.tensors);
  auto need = [&](const std::string& name) -> const Tensor& {
    auto it = tensors.find(name);
    MS_CHECK(it != tensors.end(), "GPT weights ", path, ": missing tensor '", name, "'");
    return it->second;
  };
  const Tensor& wte = need("wte.weight");
  const Tensor& wpe = need("wpe.weight");
  MS_CHECK(wte.dim() == 2 && wpe.dim() == 2, "GPT weights ", path,
           ": wte.weight and wpe.weight must be 2-D, got ", shape_str(wte.shape()), " and ",
           shape_str(wpe.shape()));
  int64_t layers = 0;
  while (tensors.count("h." + std::to_string(layers) + ".ln_1.weight")) ++layers;
  GPTConfig cfg;
  cfg.vocab_size = wte.shape()[0];
  cfg.n_embd = wte.shape()[1];
  cfg.block_size = wpe.shape()[0];
  cfg.n_layer = metadata_int(file.metadata, "n_layer", layers);
  // Head count is not visible in the shapes; GPT-2 uses 64-wide heads.
  cfg.n_head = metadata_int(file.metadata, "n_head", std::max<int64_t>(cfg.n_embd / 64, 1));
  cfg.validate();
  auto model = std::make_shared<GPT>(cfg, 0);
  model->load_safetensors(path);
  return model;
}

void GPT::load_safetensors(const std::string& path) {
  std::map<std::string, Tensor> tensors = strip_prefix(ms::load_safetensors(path).tensors);
  std::set<std::string> used;
  NoGradGuard no_grad;
  for (auto& [name, param] : named_parameters()) {
    auto it = tensors.find(name);
    MS_CHECK(it != tensors.end(), "GPT weights ", path, ": missing tensor '", name, "' ",
             shape_str(param.shape()));
    MS_CHECK(it->second.shape() == param.shape(), "GPT weights ", path, ": '", name, "' has shape ",
             shape_str(it->second.shape()), " but the model expects ", shape_str(param.shape()));
    MS_CHECK(is_float_dtype(it->second.dtype()), "GPT weights ", path, ": '", name, "' has dtype ",
             dtype_name(it->second.dtype()), "; expected F32, F16 or BF16");
    copy_(param, it->second);  // converts F16/BF16 to f32
    used.insert(name);
  }
  for (const auto& [name, t] : tensors)
    MS_CHECK(used.count(name) || ignorable(name), "GPT weights ", path, ": unexpected tensor '",
             name, "' ", shape_str(t.shape()), " (not a parameter of ", cfg_.describe(), ")");
}

void GPT::save_safetensors(const std::string& path) const {
  std::map<std::string, Tensor> tensors;
  for (auto& [name, param] : named_parameters()) tensors[name] = param;
  std::map<std::string, std::string> meta{{"n_layer", std::to_string(cfg_.n_layer)},
                                          {"n_head", std::to_string(cfg_.n_head)},
                                          {"n_embd", std::to_string(cfg_.n_embd)},
                                          {"block_size", std::to_string(cfg_.block_size)},
                                          {"vocab_size", std::to_string(cfg_.vocab_size)}};
  ms::save_safetensors(path, tensors, meta);
}

}  // namespace ms
