#include "parallel/ep/ep_report.h"

#include "nn/moe.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_traffic.h"
#include "parallel/zero/memory.h"  // format_bytes
#include "tensor/factory.h"

namespace ms {

std::string ep_groups_report(Communicator& dp, Communicator& world, const EpLayout& layout) {
  Tensor mine = full({1}, static_cast<double>(world.rank()), DType::F64);
  Tensor all = Tensor::empty({dp.size()}, DType::F64);
  dp.all_gather(mine, all);
  std::vector<int> world_of_dp;
  for (double r : all.to_vector()) world_of_dp.push_back(static_cast<int>(r));
  return layout.describe(world_of_dp);
}

std::string ep_memory_line(const GPT& model, int ep_size, int ep_rank) {
  const ExpertParams ex = expert_params(model, ep_size, ep_rank);
  const int64_t E = model.config().moe.experts;
  return str_cat("expert parallelism: dense parameters ", format_bytes(double(ex.dense_numel)),
                 " on every rank (the table above; averaged over dp); expert parameters ",
                 format_bytes(double(ex.local_numel)), " per rank = ", E / ep_size, " of ", E,
                 " experts per MoE layer (", format_bytes(double(ex.expert_numel)),
                 " in all over ep ", ep_size,
                 "; their optimizer over the expert-dp group, the table below)\n");
}

std::string ep_traffic_report(EpGroups& groups, const StepTraffic& meter, GPT& model, bool* match) {
  const int P = groups.ep.size();
  const int64_t C = model.config().n_embd, E = model.config().moe.experts;
  int64_t formula = 0, forwards = 0, slots = 0;
  for (Module* m : model.modules())
    if (auto* moe = dynamic_cast<MoE*>(m)) {
      const int64_t cap = moe->total_load().capacity_slots;  // Σ over the run's forwards
      formula += ep_layer_bytes(E, cap, C, 4, P);
      slots += cap;
      forwards += moe->total_load().forwards;
    }
  const std::vector<Traffic> all = gather_traffic(groups.ep, meter.in_steps());
  bool ok = true;
  for (const Traffic& t : all) ok = ok && t[CommOp::AllToAll].sent == formula;
  if (match) *match = ok;
  if (groups.ep.rank() != 0) return "";
  const int64_t steps = meter.num_steps(), per = forwards;
  std::string s = str_cat(
      "expert parallelism (ep ", P, "): all-to-all bytes each rank sent in the ", steps,
      " training steps, measured by the ledger, beside the formula\n  formula: per MoE layer and "
      "micro-step ",
      ep_layer_formula(E, per > 0 ? slots / per : 0, C, 4, P),
      " (dispatch, combine, and both again in backward; capacity = the gate's, ",
      per > 0 && slots % per == 0 ? "the same every forward" : "the mean over the forwards",
      "; Σ capacity over the run ", slots, ")\n");
  auto cell = [](const std::string& v, size_t w) {
    return std::string(w > v.size() ? w - v.size() : 0, ' ') + v;
  };
  s += "  " + cell("", 14) + cell("calls", 10);
  for (size_t r = 0; r < all.size(); ++r) s += cell(str_cat("rank ", r), 11);
  s += cell("formula", 11) + cell("match", 7) + "\n  " + std::string("all_to_all") + cell("", 4) +
       cell(std::to_string(all[0][CommOp::AllToAll].calls), 10);
  for (const Traffic& t : all) s += cell(std::to_string(t[CommOp::AllToAll].sent), 11);
  s += cell(std::to_string(formula), 11) + cell(ok ? "yes" : "NO", 7) + "\n";
  if (per > 0)
    s += str_cat("  per MoE layer per micro-step: ", all[0][CommOp::AllToAll].sent / per,
                 " bytes measured, ", formula / per, " by the formula\n");
  return s;
}

}  // namespace ms
