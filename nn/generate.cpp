#include "nn/generate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "autograd/grad_mode.h"

namespace ms {

// Sampling is one rank's business (train samples on rank 0 only), so every
// parameter must already be here. An empty one was released — ZeRO-3 frees a
// block's parameters between steps — and fetching it back is a collective the
// other ranks would never join: say so before anything waits or crashes.
static void check_not_released(const GPT& model) {
  for (size_t b = 0; b < model.blocks().size(); ++b)
    for (const Tensor& p : model.blocks()[b]->parameters())
      MS_CHECK(p.numel() > 0, "generate: the parameters of block ", b,
               " are released (ZeRO-3 frees them between steps), and one rank cannot gather "
               "them alone: every rank must call gather_full_parameters() before one samples, "
               "or all ranks must run the forward together");
  for (const auto& [name, p] : model.named_parameters())
    MS_CHECK(p.numel() > 0, "generate: parameter ", name,
             " is released (empty): every rank must call gather_full_parameters() first");
}

std::string generate(GPT& model, const std::string& prompt, const SampleOptions& opts) {
  MS_CHECK(opts.temperature >= 0, "sample: temperature ", opts.temperature, " must be >= 0");
  MS_CHECK(opts.top_k >= 0, "sample: top-k ", opts.top_k, " must be >= 0");
  check_not_released(model);
  NoGradGuard no_grad;
  bool was_training = model.training();
  model.eval();
  const int64_t V = model.config().vocab_size, block = model.config().block_size;
  std::vector<int32_t> ctx;
  for (unsigned char c : prompt.empty() ? std::string("\n") : prompt) ctx.push_back(c);
  Generator gen(opts.seed);
  const Device device = model.parameters().front().device();
  std::string out;
  for (int64_t i = 0; i < opts.tokens; ++i) {
    int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ctx.size()) - block);
    std::vector<int32_t> window(ctx.begin() + start, ctx.end());
    int64_t T = static_cast<int64_t>(window.size());
    // A model held in bf16/f16 (mixed precision) returns 16-bit logits:
    // sample from their f32 values.
    // The tokens go to the model's device; the logits come back for sampling.
    Tensor tokens = from_vector(window, {1, T}).to(device);
    Tensor logits = to(model.forward(tokens), DType::F32).to(Device::CPU);  // (1, T, V)
    const float* last = logits.host_data<float>() + (T - 1) * V;
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return last[a] > last[b]; });
    int32_t next = order[0];
    if (opts.temperature > 0) {
      int64_t k = opts.top_k == 0 ? V : std::min(opts.top_k, V);
      std::vector<double> p(k);
      double z = 0;
      for (int64_t j = 0; j < k; ++j) {
        p[j] = std::exp((last[order[j]] - last[order[0]]) / opts.temperature);
        z += p[j];
      }
      double u = gen.uniform() * z;
      for (int64_t j = 0; j < k; ++j) {
        if ((u -= p[j]) <= 0 || j == k - 1) {
          next = order[j];
          break;
        }
      }
    }
    ctx.push_back(next);
    out.push_back(static_cast<char>(next));
  }
  model.train(was_training);
  return out;
}

std::string printable_sample(const std::string& bytes) {
  // The length of the valid UTF-8 sequence starting at i, or 0 (a lone or
  // truncated byte >= 0x80, which a terminal would garble: shown as \xNN).
  auto utf8_length = [&](size_t i) -> size_t {
    const auto c = static_cast<unsigned char>(bytes[i]);
    const size_t n = c >= 0xC2 && c <= 0xDF   ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
    if (n == 0 || i + n > bytes.size()) return 0;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(bytes[i + k]) & 0xC0) != 0x80) return 0;
    return n;
  };
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x80) {
      if (size_t n = utf8_length(i)) {
        out.append(bytes, i, n);
        i += n - 1;
      } else {
        char buf[5];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      }
    } else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace ms
