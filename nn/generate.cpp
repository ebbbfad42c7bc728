#include "nn/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/grad_mode.h"

namespace ms {

std::string generate(GPT& model, const std::string& prompt, const SampleOptions& opts) {
  MS_CHECK(opts.temperature >= 0, "sample: temperature ", opts.temperature, " must be >= 0");
  MS_CHECK(opts.top_k >= 0, "sample: top-k ", opts.top_k, " must be >= 0");
  NoGradGuard no_grad;
  bool was_training = model.training();
  model.eval();
  const int64_t V = model.config().vocab_size, block = model.config().block_size;
  std::vector<int32_t> ctx;
  for (unsigned char c : prompt.empty() ? std::string("\n") : prompt) ctx.push_back(c);
  Generator gen(opts.seed);
  std::string out;
  for (int64_t i = 0; i < opts.tokens; ++i) {
    int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ctx.size()) - block);
    std::vector<int32_t> window(ctx.begin() + start, ctx.end());
    int64_t T = static_cast<int64_t>(window.size());
    Tensor logits = model.forward(from_vector(window, {1, T}));  // (1, T, V)
    const float* last = logits.data<float>() + (T - 1) * V;
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

}  // namespace ms
