#include "cli/train_setup.h"

#include <cstdio>
#include <filesystem>

#include "cli/agree.h"
#include "cli/output_paths.h"
#include "cli/train_moe.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_report.h"
#include "tensor/error.h"

namespace ms {

TokenData load_train_data(Communicator& world, const TrainConfig& c) {
  const int64_t B = c.B, T = c.T, eval_every = c.eval_every;
  // The data first: mapping it is cheap, and TokenData::load refuses what is
  // not a regular file (/dev/zero never ends, a FIFO may never be written).
  ActivityNote loading("loading --data '" + c.data + "'");

  return on_every_rank(world, [&] {
    TokenData d = TokenData::load(c.data);
    MS_CHECK(static_cast<int64_t>(d.train_size()) >= B * T + 1, "--data: '", c.data, "' has ",
             d.train_size(), " training bytes, fewer than one batch (--batch-size ", B,
             " × --seq-len ", T, " + 1)");
    if (eval_every > 0)
      MS_CHECK(static_cast<int64_t>(d.val_size()) >= B * T + 1, "--data: the validation split has ",
               d.val_size(), " bytes, fewer than one batch; use --eval-every 0 or a smaller batch");
    return d;
  });
}

void check_train_outputs(Communicator& world, const Flags& flags, const TrainConfig& c) {
  const bool lead = world.rank() == 0;
  // Checked before training, not after it: a path that cannot take the
  // weights, the loss curve beside them or the timeline must not cost the run.
  // Rank 0 writes them all; every rank ends with its verdict.
  on_every_rank(world, [&] {
    if (!lead) return 0;
    if (const std::string save_to = flags.str("save-weights"); !save_to.empty()) {
      const std::filesystem::path p(save_to);
      const std::string stem = (p.parent_path() / p.stem()).string();
      for (const std::string& f : {save_to, stem + ".loss.csv", stem + ".loss.svg"}) {
        check_output_path("--save-weights", f);
        check_not_an_input("--save-weights", f, "--data", c.data);
        check_not_an_input("--save-weights", f, "--config", flags.str("config"));
      }
    }
    if (!c.timeline.empty()) {
      check_output_path("--timeline", c.timeline);
      check_not_an_input("--timeline", c.timeline, "--data", c.data);
      check_not_an_input("--timeline", c.timeline, "--config", flags.str("config"));
    }
    return 0;
  });
}

void print_run_header(Communicator& world, Engine& engine, const TrainConfig& c,
                      int64_t serial_params) {
  const bool lead = world.rank() == 0;
  const int64_t B = c.B, T = c.T, accum = c.accum;
  const int64_t D = c.dp, tp = c.tp, pp = c.pp, cp = c.cp;
  const int64_t zero_stage = c.zero_stage;
  const std::string& opt_name = c.optimizer;
  Mesh& mesh = engine.mesh();
  ZeroOptimizer& zero = engine.zero_optimizer();
  const GPTConfig& cfg = engine.gpt().config();
  EpGroups* ep = engine.ep();  // expert parallelism (parallel/ep/), null without --ep
  const std::string ep_groups = ep ? ep_groups_report(mesh.dp_cp(), world, ep->layout) : "";
  if (lead) {
    std::printf("minispeed train: %s, %lld parameters, %lld rank(s), ZeRO stage %lld\n",
                cfg.describe().c_str(), static_cast<long long>(serial_params),
                static_cast<long long>(world.size()), static_cast<long long>(zero_stage));
    if (world.size() > 1) std::printf("%s%s", mesh.describe_groups().c_str(), ep_groups.c_str());
    if (c.precision.enabled()) std::printf("  %s\n", c.precision.describe().c_str());
    if (c.model.moe.enabled())
      std::printf("%s", moe_run_line(c.model, B * T, D, ep ? ep->ep.size() : 1).c_str());
    if (tp > 1)
      std::printf("  tensor parallel: tp %lld%s, %lld parameters per tp rank\n",
                  static_cast<long long>(tp), c.sequence_parallel ? " + sequence parallel" : "",
                  static_cast<long long>(zero.num_parameters()));
    if (cp > 1)
      std::printf(
          "  context parallel: cp %lld, %s attention, %lld of the %lld positions of every sequence "
          "per cp rank; gradients averaged over dp × cp = %lld ranks\n",
          static_cast<long long>(cp), c.cp_algo.c_str(), static_cast<long long>(T / cp),
          static_cast<long long>(T), static_cast<long long>(D * cp));
    if (pp > 1)
      std::printf(
          "  pipeline parallel: pp %lld, %s schedule%s, %lld micro-batches per step "
          "(--grad-accum)\n",
          static_cast<long long>(pp), c.pipe_schedule.c_str(),
          c.virtual_stages > 1 ? str_cat(", ", c.virtual_stages, " chunks per rank").c_str() : "",
          static_cast<long long>(accum));
    std::printf(
        "  batch %lld×%lld tokens per replica × %lld micro-steps × %lld replicas = %lld "
        "tokens/step; %s, lr %g (%s)\n",
        static_cast<long long>(B), static_cast<long long>(T), static_cast<long long>(accum),
        static_cast<long long>(D), static_cast<long long>(B * T * accum * D), opt_name.c_str(),
        c.lr, engine.lr_scheduler().name().c_str());
    std::fflush(stdout);
  }
}

}  // namespace ms
