#include "cli/train_moe.h"

#include <cmath>
#include <cstdio>

#include "cli/checked.h"
#include "cli/train_config.h"
#include "nn/moe.h"

namespace ms {

void add_moe_flags(Flags& f) {
  // ---- mixture of experts (nn/moe.h; DeepSpeed's deepspeed.moe.layer.MoE) ----
  f.add("moe-experts", "0",
        "experts E per MoE block (0 = dense); each a GPT-2 MLP, chosen per token by a linear "
        "router (DeepSpeed's TopKGate)");
  f.add("moe-every", "2",
        "every K-th block is an MoE (h.K-1, h.2K-1, ...: Megatron-DeepSpeed's "
        "expert_interval)");
  f.add("moe-top-k", "1", "experts per token: 1 (Switch) | 2 (GShard, weights renormalized)");
  f.add("capacity-factor", "1.0",
        "slots per expert = ceil(k · tokens / E · F), at least --moe-min-capacity; tokens "
        "are per rank (each rank routes its own micro-batch, as DeepSpeed)");
  f.add("moe-min-capacity", "4", "the smallest capacity per expert (DeepSpeed's min_capacity)");
  f.add("moe-drop-tokens", "on",
        "on: tokens past an expert's capacity are dropped, in position order | off: the "
        "capacity is the largest load, nothing drops");
  f.add("moe-aux-loss-coef", "0.01", "the load-balancing loss l_aux enters the loss times this");
  f.add("ep", "1",
        "expert parallelism: the experts split over P consecutive dp ranks (E % P == 0, P "
        "divides dp); two all-to-alls per MoE layer each way (DeepSpeed's ep_size)");
}

void read_moe_flags(const Flags& flags, TrainConfig& c) {
  MoEConfig& m = c.model.moe;
  m.experts = flags.integer("moe-experts");
  MS_CHECK(m.experts >= 0, "--moe-experts must be >= 0 (0 = dense), got ", m.experts);
  const bool any_given = flags.given("moe-every") || flags.given("moe-top-k") ||
                         flags.given("capacity-factor") || flags.given("moe-min-capacity") ||
                         flags.given("moe-drop-tokens") || flags.given("moe-aux-loss-coef");
  c.ep = flags.integer("ep");
  MS_CHECK(c.ep >= 1, "--ep must be >= 1, got ", c.ep);
  MS_CHECK(c.ep == 1 || m.enabled(), "--ep ", c.ep,
           " needs --moe-experts E >= 1 (expert parallelism splits the experts)");
  MS_CHECK(m.enabled() || !any_given,
           "the --moe-* and --capacity-factor flags need --moe-experts E >= 1 (the model is "
           "dense without it)");
  if (!m.enabled()) return;
  m.every = flags.integer("moe-every");
  MS_CHECK(m.every >= 1 && m.every <= c.model.n_layer,
           "--moe-every must be in [1, --n-layer] = [1, ", c.model.n_layer, "], got ", m.every);
  m.top_k = flags.integer("moe-top-k");
  MS_CHECK(m.top_k == 1 || m.top_k == 2, "--moe-top-k must be 1 (Switch) or 2 (GShard), got ",
           m.top_k);
  MS_CHECK(m.top_k <= m.experts, "--moe-top-k ", m.top_k, " exceeds --moe-experts ", m.experts,
           " (each token needs k distinct experts)");
  m.capacity_factor = flags.real("capacity-factor");
  MS_CHECK(std::isfinite(m.capacity_factor) && m.capacity_factor > 0,
           "--capacity-factor must be a finite number > 0, got ", flags.str("capacity-factor"));
  m.min_capacity = flags.integer("moe-min-capacity");
  MS_CHECK(m.min_capacity >= 0, "--moe-min-capacity must be >= 0, got ", m.min_capacity);
  const std::string drop = flags.str("moe-drop-tokens");
  MS_CHECK(drop == "on" || drop == "off" || drop == "1" || drop == "0" || drop == "true" ||
               drop == "false",
           "--moe-drop-tokens must be on or off, got ", drop);
  m.drop_tokens = drop == "on" || drop == "1" || drop == "true";
  m.aux_loss_coef = flags.real("moe-aux-loss-coef");
  MS_CHECK(std::isfinite(m.aux_loss_coef) && m.aux_loss_coef >= 0,
           "--moe-aux-loss-coef must be a finite number >= 0, got ",
           flags.str("moe-aux-loss-coef"));
  // Each capacity slot's buffer row and the experts' activations count like
  // the dense MLP's; the products must fit int64.
  checked_product({{"--moe-experts", m.experts},
                   {"--n-embd", c.model.n_embd},
                   {"--n-embd", c.model.n_embd},
                   {"8 (an expert's two 4C matrices)", 8}},
                  "parameters of one MoE layer's experts");

  const char* planned = " (planned)";
  MS_CHECK(c.tp == 1, "--moe-experts with --tp ", c.tp,
           ": MoE runs without tensor parallelism for now", planned);
  MS_CHECK(c.pp == 1, "--moe-experts with --pp ", c.pp,
           ": MoE runs without pipeline parallelism for now", planned);
  MS_CHECK(c.device == Device::CPU, "--moe-experts with --device ", device_name(c.device),
           ": MoE runs on the CPU only for now (its routing kernels have no device switch: use "
           "--device cpu)");
  MS_CHECK(c.cp == 1, "--moe-experts with --cp ", c.cp,
           ": MoE runs without context parallelism for now", planned);
  // DeepSpeed engine.py _configure_zero_optimizer: assert not self.has_moe_layers,
  // "MoE not supported with Stage 3".
  MS_CHECK(c.zero_stage <= 2, "--moe-experts with --zero-stage ", c.zero_stage,
           ": ZeRO-3 with MoE is refused, as DeepSpeed's MoE runs with ZeRO stages 0-2 (use 0-2)");
  MS_CHECK(m.experts % c.ep == 0, "--ep ", c.ep, " does not divide --moe-experts ", m.experts,
           " (each ep rank holds E/ep whole experts)");
  MS_CHECK((c.dp * c.cp) % c.ep == 0, "--ep ", c.ep, " does not divide the data-parallel size ",
           c.dp * c.cp, " (ranks ", c.dp * c.tp * c.pp * c.cp, " / (--tp ", c.tp, " × --pp ", c.pp,
           "), dp × cp; the ep groups are carved from the dp ranks, as DeepSpeed's)");
  MS_CHECK(c.ep == 1 || c.precision.dtype == DType::F32, "--ep ", c.ep,
           " with --bf16/--fp16: expert parallelism runs in fp32 for now");
  MS_CHECK(!c.checkpoint_activations,
           "--moe-experts with --checkpoint-activations: a recomputed block's l_aux would reach "
           "the loss without its graph, so the router would lose the auxiliary loss's gradient "
           "(planned)");
  MS_CHECK(flags.str("init-from").empty(),
           "--moe-experts with --init-from: a safetensors file does not say which blocks hold "
           "experts; start a fresh MoE model, or --resume one of its checkpoints");
}

int64_t moe_extra_parameters(const GPTConfig& m) {
  if (!m.moe.enabled()) return 0;
  const int64_t C = m.n_embd, E = m.moe.experts;
  const std::string what = "parameters of the MoE layers";
  // Per MoE block: E MLPs (8C² + 5C each) and the router C·E, instead of one MLP.
  const int64_t mlp = checked_product({{"--n-embd", C}, {"--n-embd", C}, {"8", 8}}, what) + 5 * C;
  const int64_t per_block =
      checked_product({{"--moe-experts - 1", E - 1}, {"one MLP", mlp}}, what) +
      checked_product({{"--n-embd", C}, {"--moe-experts", E}}, what);
  return checked_product(
      {{"MoE blocks", m.n_layer / m.moe.every}, {"extra per MoE block", per_block}}, what);
}

std::string moe_run_line(const GPTConfig& m, int64_t tokens, int64_t dp, int64_t ep) {
  const MoEConfig& e = m.moe;
  std::string blocks;
  for (int64_t i = 0; i < m.n_layer; ++i)
    if (e.is_moe_block(i)) blocks += str_cat(blocks.empty() ? "" : ", ", "h.", i);
  const MoeGateOptions o{.k = e.top_k,
                         .capacity_factor = e.capacity_factor,
                         .min_capacity = e.min_capacity,
                         .drop_tokens = e.drop_tokens};
  return str_cat(
      "  mixture of experts: ", e.experts, " experts, top-", e.top_k, " in ", blocks, "; capacity ",
      e.drop_tokens ? str_cat(moe_capacity(tokens, e.experts, o), " slots per expert for the ",
                              tokens, " tokens of a micro-batch")
                    : std::string("= the largest load (--moe-drop-tokens off)"),
      dp > 1 && ep == 1 ? str_cat(" on each of the ", dp,
                                  " dp ranks (each routes its own tokens, as DeepSpeed without "
                                  "--ep; the experts are replicated); l_aux and dropped below "
                                  "are rank 0's")
      : ep > 1
          ? str_cat(" on each of the ", dp, " dp ranks (each routes its own tokens, as DeepSpeed)",
                    "; expert parallelism: ", e.experts / ep, " experts per rank over ep ", ep,
                    e.drop_tokens ? "" : " (the ep group agrees on the largest capacity)",
                    "; l_aux and dropped below are rank 0's")
          : "",
      "; loss = cross-entropy + ", exact_str(e.aux_loss_coef), " · Σ l_aux\n");
}

int64_t moe_idle_parameters(const GPTConfig& m) {
  if (!m.moe.enabled()) return 0;
  const int64_t C = m.n_embd;
  return (m.n_layer / m.moe.every) * (m.moe.experts - m.moe.top_k) * (8 * C * C + 5 * C);
}

namespace {

std::vector<MoE*> moe_layers(GPT& model) {
  std::vector<MoE*> out;
  for (Module* m : model.modules())
    if (auto* moe = dynamic_cast<MoE*>(m)) out.push_back(moe);
  return out;
}

}  // namespace

std::string moe_step_fields(GPT& model) {
  MoELoad step;
  for (MoE* m : moe_layers(model)) step.add(m->take_step_load());
  if (step.forwards == 0) return "";
  const int64_t layers = static_cast<int64_t>(moe_layers(model).size());
  // l_aux summed over the MoE layers (what the coefficient multiplies), the
  // mean over the step's micro-batches; 1.0 per layer is perfect balance.
  const double aux = step.aux_sum / static_cast<double>(step.forwards / layers);
  const double dropped =
      100.0 * static_cast<double>(step.dropped) / static_cast<double>(step.choices);
  char buf[96];
  std::snprintf(buf, sizeof buf, " | l_aux %.4f | dropped %.1f%%", aux, dropped);
  return buf;
}

std::string moe_load_table(GPT& model, int64_t dp) {
  std::vector<MoE*> layers = moe_layers(model);
  if (layers.empty()) return "";
  std::string out =
      str_cat("expert load over the run (choices routed per expert",
              dp > 1 ? ", rank 0's own tokens: each rank routes its own" : "", "):\n");
  int64_t index = 0;
  for (MoE* m : layers) {
    const MoELoad& load = m->total_load();
    // The layer's block: the index-th MoE block of every `every`.
    const int64_t block = (index + 1) * model.config().moe.every - 1;
    ++index;
    std::string row = str_cat("  h.", block, ".mlp:");
    for (size_t e = 0; e < load.routed.size(); ++e) row += str_cat(" e", e, " ", load.routed[e]);
    char pct[32];
    std::snprintf(
        pct, sizeof pct, "%.1f%%",
        load.choices ? 100.0 * static_cast<double>(load.dropped) / static_cast<double>(load.choices)
                     : 0.0);
    out += str_cat(row, " | dropped ", load.dropped, " of ", load.choices, " (", pct, ")\n");
  }
  return out;
}

}  // namespace ms
