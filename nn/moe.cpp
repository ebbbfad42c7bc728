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
  capacity_slots += o.capacity_slots;
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

  // Without dropping each rank's capacity is its own largest load; the ep
  // group's buffers must agree (the slots stay valid in a larger buffer).
  if (ep_.size > 1 && !moe_.drop_tokens) last_.capacity = ep_.agree_capacity(last_.capacity);
  Tensor weights = moe_gate_weights(gates, last_);  // (S, k), the gates' dtype
  Tensor buffer = moe_dispatch(tokens, last_);      // (E, capacity, C)
  Tensor expert_out = run_experts(buffer);          // (E, capacity, C)
  Tensor y = moe_combine(expert_out, ms::to(weights, expert_out.dtype()), last_);  // (S, C)

  if (training()) {
    const int32_t* kept = last_.kept.host_data<int32_t>();  // (E), not per token
    for (int64_t e = 0; e < E; ++e) step_.routed[static_cast<size_t>(e)] += kept[e];
    step_.dropped += last_.dropped();
    step_.choices += last_.tokens * last_.k;
    step_.aux_sum += aux.item();
    step_.capacity_slots += last_.capacity;
    ++step_.forwards;
  }
  return reshape(y, x.shape());
}

void MoE::set_expert_parallel(MoEExpertParallel ep) {
  const int64_t E = static_cast<int64_t>(experts.size());
  MS_CHECK(ep.size >= 1 && E % ep.size == 0, "MoE: ", E, " experts do not split over ep ",
           ep.size, " (E % ep must be 0)");
  MS_CHECK(ep.rank >= 0 && ep.rank < ep.size, "MoE: ep rank ", ep.rank, " outside [0, ", ep.size,
           ")");
  MS_CHECK(ep.size == 1 || (ep.exchange && ep.agree_capacity),
           "MoE: expert parallelism needs its exchange and capacity agreement");
  ep_ = std::move(ep);
}

Tensor MoE::run_experts(const Tensor& buffer) {
  const int64_t E = static_cast<int64_t>(experts.size());
  // Every expert runs on its whole buffer, empty slots included (as the
  // einsum dispatch of DeepSpeed's MOELayer does): an expert that got no
  // token still gets a gradient, an exact zero, so every rank's optimizer
  // state advances alike.
  std::vector<Tensor> outputs;
  if (ep_.size == 1) {
    outputs.reserve(static_cast<size_t>(E));  // E × (1, capacity, C)
    for (int64_t e = 0; e < E; ++e)
      outputs.push_back(
          unsqueeze(experts[static_cast<size_t>(e)]->forward(select(buffer, 0, e)), 0));
    return cat(outputs, 0);
  }
  // DeepSpeed's MOELayer: the dispatch all-to-all hands ep rank j the rows of
  // its E/P experts from every rank; each local expert runs on its P·capacity
  // rows (an MLP is row-wise, so the rows' order changes nothing); the
  // combine all-to-all sends each rank's rows back.
  const int64_t P = ep_.size, L = local_experts(), cap = buffer.shape()[1], C = buffer.shape()[2];
  Tensor recv = reshape(ep_.exchange(buffer), {P, L, cap, C});  // block p: rank p's rows for us
  outputs.reserve(static_cast<size_t>(L));                       // L × (P, 1, capacity, C)
  for (int64_t l = 0; l < L; ++l) {
    Tensor rows = reshape(contiguous(select(recv, 1, l)), {P * cap, C});  // (P·capacity, C)
    Tensor out = experts[static_cast<size_t>(first_local_expert() + l)]->forward(rows);
    outputs.push_back(reshape(out, {P, 1, cap, C}));
  }
  Tensor back = reshape(cat(outputs, 1), {E, cap, C});  // block p: our experts' rows for rank p
  return ep_.exchange(back);                            // (E, capacity, C), all E experts
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
