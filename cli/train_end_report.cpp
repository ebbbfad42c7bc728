#include "cli/train_end_report.h"

#include <cstdio>

#include "cli/agree.h"
#include "cli/train_device.h"
#include "cli/train_moe.h"
#include "parallel/cp/cp_report.h"
#include "parallel/ep/ep_moe.h"
#include "parallel/ep/ep_report.h"

namespace ms {

void check_some_step_updated(const TrainConfig& c, const ZeroOptimizer& zero, int64_t steps_run,
                             int64_t skipped_steps) {
  if (steps_run > 0 && skipped_steps == steps_run)
    throw AgreedError(str_cat(
        "every one of the ", skipped_steps,
        " training steps was skipped: the gradients held "
        "inf/NaN at every step",
        c.precision.dtype == DType::F16
            ? str_cat(" (last loss scale ", exact_str(zero.loss_scale()),
                      "), so the weights were never updated. Try a smaller static --loss-scale "
                      "(fp16.loss_scale), or dynamic loss scaling (--loss-scale 0) from a lower "
                      "--initial-scale-power, or --bf16; if it overflows even at a small scale, "
                      "check the data and lower --lr")
            : ", so the weights were never updated (bf16 has no loss scale to lower): check the "
              "data and lower --lr"));
}

EndOfRunReport gather_end_of_run_report(Communicator& world, Engine& engine, const TrainConfig& c,
                                        const TrainTraffic& traffic) {
  const int64_t B = c.B, T = c.T, tp = c.tp, cp = c.cp;
  const GPTConfig& cfg = engine.gpt().config();
  Mesh& mesh = engine.mesh();
  EpGroups* ep = engine.ep();
  EndOfRunReport r;
  // Per-rank memory: measured beside the ZeRO paper's prediction.
  MemoryReport mine = engine.zero_optimizer().memory();
  mine.rank = world.rank();
  r.memory = gather_memory_reports(world, mine);
  // Collective over cp: one attention call measured (parallel/cp/cp_report.h).
  r.cp_memory =
      cp > 1 ? cp_memory_report(mesh.cp(), c.cp_algo, B, T, cfg.n_head / tp, cfg.n_embd / tp) : "";
  r.traffic = traffic.report(engine);
  // The experts' optimizer (parallel/ep/ep_optimizer.h): its own tables.
  if (ep) {
    MemoryReport e = engine.expert_optimizer()->memory();
    e.rank = world.rank();
    const std::vector<MemoryReport> per_rank = gather_memory_reports(world, e);
    r.ep_memory =
        ep_memory_line(engine.gpt(), ep->ep.size(), ep->ep.rank()) +
        format_memory_table(per_rank, str_cat("the experts' optimizer over the expert-dp "
                                              "group (D = ",
                                              ep->expert_dp.size(), "), this rank's experts only"));
  }
  return r;
}

std::string device_memory_lines(const TrainConfig& c, const ZeroOptimizer& zero, int rank,
                                const MasterWeights::Transfers& before, int64_t steps_run) {
  std::string device_memory = device_memory_line(c.device, rank);
  if (zero.offloaded() && steps_run > 0) {
    const MasterWeights::Transfers t = zero.offload_transfers();
    const int64_t n = steps_run;
    device_memory +=
        str_cat("ZeRO-Offload (rank ", rank, "): fp32 masters and optimizer state on the cpu; ",
                "per step ", (t.d2h - before.d2h) / n, " bytes device->host (fp32 gradients) and ",
                (t.h2d - before.h2d) / n, " bytes host->device (updated ",
                dtype_name(zero.precision().dtype), " parameters)",
                c.device == Device::CPU ? " (0: the model is on the cpu too)" : "", "\n");
  }
  return device_memory;
}

void print_end_of_run_report(const TrainConfig& c, Engine& engine, const EndOfRunReport& r,
                             int64_t serial_params) {
  const int64_t D = c.dp, tp = c.tp, pp = c.pp;
  const ZeroOptimizer& zero = engine.zero_optimizer();
  if (tp > 1)
    std::printf(
        "(under --tp %lld, Ψ below is one tp rank's shards: %lld of the model's %lld "
        "parameters; ZeRO partitions them over the %lld dp ranks)\n",
        static_cast<long long>(tp), static_cast<long long>(zero.num_parameters()),
        static_cast<long long>(serial_params), static_cast<long long>(D));
  std::printf("%s%s%s%s%s", format_memory_table(r.memory).c_str(), r.device_memory.c_str(),
              r.tp_memory.c_str(), r.cp_memory.c_str(), r.ep_memory.c_str());
  if (c.precision.enabled())
    std::printf(
        "(the parameters-per-tp-rank and activation lines were measured on the f32 model, "
        "before ZeroOptimizer cast it to %s; the table above is the 16-bit run's own)\n",
        dtype_name(c.precision.dtype));
  if (tp > 1 && D > 1)
    std::printf("(traffic of world rank 0's dp group and tp group; the other groups' match)\n");
  if (pp > 1)
    std::printf(
        "(under --pp %lld, each rank's memory above is its stage's parameters; every rank also "
        "keeps the whole model object, %lld parameters, to gather the stages for sampling and "
        "saving: not released yet)\n",
        static_cast<long long>(pp), static_cast<long long>(engine.gpt().num_parameters()));
  std::printf("%s", r.traffic.c_str());
  std::printf("%s", r.pipeline.c_str());
  std::printf("%s", moe_load_table(engine.gpt(), D).c_str());
}

}  // namespace ms
