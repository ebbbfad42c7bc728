// `minispeed train`'s step line (`step 3/300 | loss … | lr … | norm … | …`)
// and the model-FLOP/s rate it reports, measured once at start (cli/flops.h).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "cli/train_config.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

struct Clock {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

// "42s" or "3m07s".
std::string format_duration(double s);

// The step line's FLOP/s fields: the model FLOPs one rank does per step and
// our GEMM's peak on this machine, measured here (~0.1 s).
struct StepRate {
  double step_flops = 0;
  double gemm_gflops = 0;
};

// Measures the rate on every rank (serial_params: the whole model's, counted
// before tp cut it or ZeRO-3 released its blocks); rank 0 (`lead`) prints
// the two lines that explain it under the run's header.
StepRate measure_step_rate(const TrainConfig& c, const GPTConfig& cfg, int64_t serial_params,
                           bool lead);

// What one step line shows (rank 0 prints it).
struct StepLineValues {
  int64_t step = 0;  // 1-based
  double train_loss = 0, lr = 0, norm = 0;
  double loss_scale = 0;  // the scale this step's backward used (fp16 only)
  double ms = 0, eta_seconds = 0;
  double val = 0;  // NaN when not evaluated at this step
  std::string moe_fields;
};

void print_step_line(const TrainConfig& c, const StepRate& rate, const ZeroOptimizer& zero,
                     const StepLineValues& v);

// Where a run's time went on this rank, phase by phase: wall seconds beside
// this process's CPU seconds (every thread). Wall above CPU is time the rank
// waited (descheduled by other load, or asleep in a blocking receive); MPI's
// polling wait counts as CPU, so a rank waiting for a slower partner shows in
// the phase that holds the collective (backward: the gradient buckets'
// reduce-scatter; optimizer step: the clipping norm and ZeRO's all-gather).
// charge(p) books the time since the previous charge (or construction) to p:
// the phases tile the run, with no clock left running between them.
class PhaseTimes {
 public:
  enum Phase { Startup, Forward, Backward, Step, Schedule, LossAndLog, Eval, SaveOrSample, End };
  static constexpr int kPhases = End + 1;
  PhaseTimes();
  void charge(Phase p);
  // One line, "time per phase on rank 0 (wall s / CPU s): …"; phases never
  // charged (a pipeline has no separate forward) are left out.
  std::string line(int rank) const;

 private:
  double wall_[kPhases] = {}, cpu_[kPhases] = {};
  bool charged_[kPhases] = {};
  Clock since_;
  double cpu_since_ = 0;
};

}  // namespace ms
