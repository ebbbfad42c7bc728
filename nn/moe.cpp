#include "nn/moe.h"

#include <cmath>

#include "autograd/grad_mode.h"

namespace ms {

void MoEConfig::validate() const {
  MS_CHECK(experts >= 0, "config: moe.experts must be >= 0 (0 = dense), got ", experts);
  if (!enabled()) return;
  MS_CHECK(every >= 1, "config: moe.every must be >= 1, got ", every);
  MS_CHECK(top_k == 1 || top_k == 2, "config: moe.top_k must be 1 (Switch) or 2 (GShard), got ",
           top_k);
  MS_CHECK(top_k <= experts, "config: moe.top_k ", top_k, " exceeds moe.experts ", experts);
  MS_CHECK(std::isfinite(capacity_factor) && capacity_factor > 0,
           "config: moe.capacity_factor must be > 0, got ", capacity_factor);
  MS_CHECK(min_capacity >= 0, "config: moe.min_capacity must be >= 0, got ", min_capacity);
  MS_CHECK(std::isfinite(aux_loss_coef) && aux_loss_coef >= 0,
           "config: moe.aux_loss_coef must be >= 0, got ", aux_loss_coef);
}

std::string MoEConfig::describe() const {
  if (!enabled()) return "dense";
  return str_cat("MoE(experts=", experts, ", every=", every, ", top_k=", top_k,
                 ", capacity_factor=", capacity_factor, ", min_capacity=", min_capacity,
                 ", drop_tokens=", drop_tokens ? "on" : "off", ", aux_loss_coef=", aux_loss_coef,
                 ")");
}

void MoELoad::add(const MoELoad& o) {
  if (routed.size() < o.routed.size()) routed.resize(o.routed.size(), 0);
  for (size_t e = 0; e < o.routed.size(); ++e) routed[e] += o.routed[e];
  dropped += o.dropped;
  choices += o.choices;
  aux_sum += o.aux_sum;
  forwards += o.forwards;
}

MoE::MoE(const GPTConfig& cfg, Generator& gen) : moe_(cfg.moe) {
  step_.routed.assign(static_cast<size_t>(cfg.moe.experts), 0);
  total_.routed = step_.routed;
  const int64_t E = cfg.moe.experts;
  MS_CHECK(E >= 1, "MoE: needs at least one expert, got ", E);
  // GPT-2's N(0, 0.02) like every other linear here (DeepSpeed's wg keeps
  // torch.nn.Linear's default init).
  router = register_module("router", std::make_shared<Linear>(cfg.n_embd, E, false, gen));
  auto first = std::make_shared<MLP>(cfg, gen);
  for (int64_t e = 0; e < E; ++e) {
    std::shared_ptr<MLP> expert = first;
    if (e > 0) {
      // Its own dropout stream (drawn from `gen`), the first expert's weights.
      Generator own(gen.next_u64());
      expert = std::make_shared<MLP>(cfg, own);
      NoGradGuard no_grad;
      auto src = first->named_parameters(), dst = expert->named_parameters();
      for (size_t i = 0; i < dst.size(); ++i) copy_(dst[i].second, src[i].second);
    }
    experts.push_back(register_module("experts." + std::to_string(e), expert));
  }
}

Tensor MoE::forward(const Tensor& x) {
  MS_CHECK(x.dim() >= 2, "MoE: input must be (..., C), got ", shape_str(x.shape()));
  const int64_t C = x.shape().back(), E = static_cast<int64_t>(experts.size());
  Tensor tokens = reshape(x, {-1, C});  // (S, C)
  // DeepSpeed's TopKGate runs the router and the gate in f32 whatever the
  // model's dtype ("everything is in fp32 in this function"); f64 stays f64
  // so gradcheck sees the exact gate.
  const DType gate_dtype = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor logits = linear(ms::to(tokens, gate_dtype), ms::to(router->weight, gate_dtype));  // (S, E)
  Tensor gates = softmax(logits, -1);                                              // (S, E)
  last_ = moe_route(gates, {.k = moe_.top_k,
                            .capacity_factor = moe_.capacity_factor,
                            .min_capacity = moe_.min_capacity,
                            .drop_tokens = moe_.drop_tokens});
  // l_aux = E · Σ_e mean_s(gates[s, e]) · fraction_e, with fraction from the
  // first choices only, before dropping — top1gating's and top2gating's
  // definition (top2gating writes mean(me·ce)·E², the same number).
  Tensor me = mean(gates, {0});  // (E)
  Tensor aux = mul(sum(mul(me, last_.fraction)), static_cast<double>(E));
  // Only training forwards leave an l_aux for head_loss: an eval or sampling
  // forward must not add to the next training step's loss.
  if (training()) aux_ = aux_.defined() ? add(aux_, aux) : aux;

  Tensor weights = moe_gate_weights(gates, last_);  // (S, k), the gates' dtype
  Tensor buffer = moe_dispatch(tokens, last_);      // (E, capacity, C)
  // Every expert runs on its whole buffer, empty slots included (as the
  // einsum dispatch of DeepSpeed's MOELayer does): an expert that got no
  // token still gets a gradient, an exact zero, so every rank's optimizer
  // state advances alike.
  std::vector<Tensor> outputs;  // E × (1, capacity, C)
  outputs.reserve(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e)
    outputs.push_back(unsqueeze(experts[static_cast<size_t>(e)]->forward(select(buffer, 0, e)), 0));
  Tensor expert_out = cat(outputs, 0);                                         // (E, capacity, C)
  Tensor y = moe_combine(expert_out, ms::to(weights, expert_out.dtype()), last_);  // (S, C)

  if (training()) {
    const int32_t* kept = last_.kept.host_data<int32_t>();  // (E), not per token
    for (int64_t e = 0; e < E; ++e) step_.routed[static_cast<size_t>(e)] += kept[e];
    step_.dropped += last_.dropped();
    step_.choices += last_.tokens * last_.k;
    step_.aux_sum += aux.item();
    ++step_.forwards;
  }
  return reshape(y, x.shape());
}

Tensor MoE::take_aux_loss() {
  Tensor out = aux_;
  aux_ = Tensor();
  return out;
}

MoELoad MoE::take_step_load() {
  MoELoad out = step_;
  total_.add(step_);
  step_ = MoELoad{};
  step_.routed.assign(out.routed.size(), 0);
  return out;
}

}  // namespace ms
