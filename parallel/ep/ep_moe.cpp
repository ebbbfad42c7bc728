#include "parallel/ep/ep_moe.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/moe.h"
#include "parallel/comm/all_to_all_op.h"
#include "tensor/factory.h"

namespace ms {

void install_expert_parallel(GPT& model, EpGroups& groups) {
  Communicator ep = groups.ep;
  for (Module* m : model.modules()) {
    auto* moe = dynamic_cast<MoE*>(m);
    if (moe == nullptr) continue;
    MoEExpertParallel plan;
    plan.size = ep.size();
    plan.rank = ep.rank();
    plan.exchange = [ep](const Tensor& x) mutable { return differentiable_all_to_all(x, ep); };
    plan.agree_capacity = [ep](int64_t capacity) mutable {
      Tensor t = full({1}, static_cast<double>(capacity), DType::F64);
      ep.all_reduce(t, ReduceOp::Max);
      return static_cast<int64_t>(t.item());
    };
    moe->set_expert_parallel(std::move(plan));
  }
}

void uninstall_expert_parallel(GPT& model) {
  for (Module* m : model.modules())
    if (auto* moe = dynamic_cast<MoE*>(m)) moe->set_expert_parallel({});
}

int64_t expert_of(const std::string& name) {
  const std::string key = ".mlp.experts.";
  const size_t at = name.find(key);
  if (at == std::string::npos) return -1;
  return std::stoll(name.substr(at + key.size()));
}

ExpertParams expert_params(const GPT& model, int ep_size, int ep_rank) {
  const int64_t E = model.config().moe.experts;
  MS_CHECK(E == 0 || E % ep_size == 0, "--ep ", ep_size, " does not divide --moe-experts ", E,
           " (each ep rank holds E/ep whole experts)");
  const int64_t L = E == 0 ? 0 : E / ep_size;
  ExpertParams out;
  for (const auto& [name, p] : model.named_parameters()) {
    const int64_t e = expert_of(name);
    const bool is_expert = e >= 0, local = is_expert && e / L == ep_rank;
    out.expert.push_back(is_expert);
    out.local.push_back(local);
    (is_expert ? out.expert_numel : out.dense_numel) += p.numel();
    if (local) out.local_numel += p.numel();
  }
  return out;
}

void gather_experts(GPT& model, EpGroups& groups) {
  Communicator& ep = groups.ep;
  if (ep.size() == 1) return;
  const int64_t E = model.config().moe.experts, L = E / ep.size();
  for (const auto& [name, p] : model.named_parameters()) {
    const int64_t e = expert_of(name);
    if (e < 0) continue;
    Tensor buf = contiguous(detach(p));
    ep.broadcast(buf, static_cast<int>(e / L));
    if (e / L != ep.rank()) {
      NoGradGuard no_grad;
      Tensor dst = p;  // a handle to the same parameter
      copy_(dst, buf);
    }
  }
}

}  // namespace ms
