#include "cli/train_step_line.h"

#include <time.h>

#include <cmath>
#include <cstdio>

#include "cli/flops.h"
#include "cli/train_device.h"
#include "cli/train_moe.h"

namespace ms {

std::string format_duration(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

StepRate measure_step_rate(const TrainConfig& c, const GPTConfig& cfg, int64_t serial_params,
                           bool lead) {
  const int64_t B = c.B, T = c.T, accum = c.accum, tp = c.tp, pp = c.pp, cp = c.cp;
  // Model FLOP/s per rank on the step line, as a fraction of our GEMM's speed
  // measured here (~0.1 s), at this rank's thread count (cli/flops.h). Ψ is the
  // whole model's, counted before tp cut it or ZeRO-3 released its blocks; a
  // tp rank does 1/tp of its replica's FLOPs.
  const double step_flops =
      model_flops_per_step(cfg, serial_params - moe_idle_parameters(cfg), B * T * accum, T) /
      static_cast<double>(tp * pp * cp);
  const double gemm_gflops = gemm_peak_gflops(0.1);
  if (lead) {
    std::printf(
        "  model FLOPs per step per rank: %.4f GFLOP (6·Ψ·tokens + attention, cli/flops.h)%s\n",
        step_flops * 1e-9,
        cfg.moe.enabled() ? "; Ψ = the parameters a token uses, its k experts of E (the padded "
                            "capacity slots the experts also run are not counted)"
                          : "");
    // Not clamped: above 100% says this start-up measurement ran slower than
    // the GEMMs of the step did (the machine was busier then, e.g. the other
    // ranks still loading), so the ratio is only as good as this number.
    std::printf(
        "  gemm_f32 peak (512x768x256): %.1f GFLOP/s per rank, the best of repeated calls over "
        "0.1 s at start; the step line's \"%% of gemm\" is model GFLOP/s over it, above 100%% "
        "when the machine was busier during this measurement than during the step\n",
        gemm_gflops);
  }
  return {step_flops, gemm_gflops};
}

void print_step_line(const TrainConfig& c, const StepRate& rate, const ZeroOptimizer& zero,
                     const StepLineValues& v) {
  const double ms = v.ms;
  std::printf("step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f", static_cast<long long>(v.step),
              static_cast<long long>(c.steps), v.train_loss, v.lr, v.norm);
  // fp16: the loss scale this step's backward used (update() may change it after).
  if (c.precision.dtype == DType::F16) std::printf(" | scale %s", exact_str(v.loss_scale).c_str());
  std::printf(" | %6.1f ms | %7.0f tok/s | %5.1f GFLOP/s (%.0f%% of gemm) | eta %s", ms,
              static_cast<double>(c.B * c.T * c.accum * c.dp) / (ms / 1000),
              rate.step_flops / ms * 1e-6, 100.0 * rate.step_flops / ms * 1e-6 / rate.gemm_gflops,
              format_duration(v.eta_seconds).c_str());
  if (!std::isnan(v.val)) std::printf(" | val %.4f", v.val);
  std::printf("%s", device_step_field(c.device).c_str());  // "" on the CPU
  if (zero.skipped())  // mixed precision: DeepSpeed's "OVERFLOW! ... Skipping step"
    std::printf(" | %s", zero.skip_message().c_str());
  std::printf("%s\n", v.moe_fields.c_str());
  std::fflush(stdout);
}

namespace {

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

PhaseTimes::PhaseTimes() : cpu_since_(process_cpu_seconds()) {}

void PhaseTimes::charge(Phase p) {
  const double cpu = process_cpu_seconds();
  wall_[p] += since_.seconds();
  cpu_[p] += cpu - cpu_since_;
  charged_[p] = true;
  since_ = Clock{};
  cpu_since_ = cpu;
}

std::string PhaseTimes::line(int rank) const {
  static const char* const kNames[kPhases] = {
      "start-up",       "forward (with the batch)", "backward (with gradient reduction)",
      "optimizer step", "pipeline schedule",        "loss all-reduce and step line",
      "evaluation",     "checkpoints and samples",  "end (tables, weights)"};
  std::string out = str_cat("time per phase on rank ", rank, " (wall s / CPU s):");
  const char* sep = " ";
  for (int p = 0; p < kPhases; ++p) {
    if (!charged_[p]) continue;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s %.2f / %.2f", sep, kNames[p], wall_[p], cpu_[p]);
    out += buf;
    sep = "; ";
  }
  return out;
}

}  // namespace ms
