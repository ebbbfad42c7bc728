#include "bench/parallel_step/runner.h"

#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "bench/mpi_bench.h"
#include "optim/optimizer.h"

namespace ms::parallel_step {

Runner::Runner(const Setup& s, Communicator& world, const std::vector<int32_t>& xs,
               const std::vector<int32_t>& ys)
    // Fresh groups per setup: copies of a Communicator share one ledger, and
    // split() starts a new one (collective over the world: every rank builds
    // every runner).
    : s_(s),
      // Under cp the two ranks are the dp×cp group ZeRO averages over.
      dp_(s.dp * s.cp > 1 ? world.split(0, world.rank()) : world.split(world.rank(), 0)),
      tp_(world.split(0, world.rank())),
      cp_(world.split(0, world.rank())) {
  if (s.alone && world.rank() != 0) return;
  GPTConfig cfg;
  cfg.vocab_size = kV, cfg.block_size = s.T, cfg.n_layer = kL, cfg.n_head = kH, cfg.n_embd = kC;
  serial_ = std::make_shared<GPT>(cfg, 1);  // the same initial model everywhere
  if (s.tp > 1) cut_ = std::make_shared<TpGPT>(serial_, tp_, s.sp);
  if (s.cp > 1) context_ = std::make_shared<CpGPT>(serial_, nullptr, cp_, s.algo);
  ZeroOptions opts;
  opts.stage = s.zero_stage;
  if (cut_) opts.tp = ZeroTensorParallel{tp_, cut_->replicated_mask(), s.sp};
  engine_ = std::make_unique<ZeroOptimizer>(
      cut_ ? cut_->gpt() : *serial_, dp_, opts, [](std::vector<Tensor> ps) {
        return std::make_unique<AdamW>(std::move(ps), 1e-3, 0.9, 0.95, 1e-8, 0.1);
      });
  // dp rank r reads rows [r·B/D, (r+1)·B/D); tp and cp ranks read all of
  // them (a cp rank keeps its positions).
  const int64_t b = s.B / s.dp, first = s.dp > 1 ? world.rank() * b : 0;
  x_ = rows(xs, first, b, s.T), y_ = rows(ys, first, b, s.T);
}

void Runner::step(bool timed) {
  if (s_.alone && !engine_) return bench::rest_until_released();
  omp_set_num_threads(s_.threads);
  if (timed && !counting_) before_ = traffic(), counting_ = true;
  if (!s_.alone) MPI_Barrier(MPI_COMM_WORLD);  // raw MPI: outside the ledger
  const double t0 = MPI_Wtime(), c0 = bench::process_cpu_seconds();
  Tensor loss = context_ ? context_->loss(x_, y_)
                : cut_   ? cut_->loss(x_, y_)
                         : serial_->loss(x_, y_);
  const double l = loss.item();
  loss.backward();
  engine_->step(1e-3, 1.0);
  const double dt = (MPI_Wtime() - t0) * 1e3;
  const double cpu = (bench::process_cpu_seconds() - c0) * 1e3;
  if (timed) {
    ms_.push_back(s_.alone ? dt : max_over_ranks(dt));
    cpu_ms_.push_back(s_.alone ? cpu : max_over_ranks(cpu));
  }
  if (std::isnan(res_.first_loss)) {
    double sum = l;  // dp (and cp) ranks hold their half's mean: average them
    const int halves = s_.dp * s_.cp;
    if (halves > 1) MPI_Allreduce(&l, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    res_.first_loss = sum / halves;
  }
  if (s_.alone) bench::release();
}

Result Runner::result() {
  if (s_.alone && !engine_) return res_;
  const int64_t n = static_cast<int64_t>(ms_.size());
  const OpTraffic total = (traffic() - before_).total();
  res_.per_step = {total.calls / n, total.sent / n, total.received / n, total.payload / n};
  res_.round_ms = ms_, res_.round_cpu_ms = cpu_ms_;
  std::sort(ms_.begin(), ms_.end());
  std::sort(cpu_ms_.begin(), cpu_ms_.end());
  res_.median_ms = ms_[ms_.size() / 2], res_.best_ms = ms_.front(), res_.worst_ms = ms_.back();
  res_.cpu_ms = cpu_ms_[cpu_ms_.size() / 2];
  long long mine = res_.per_step.sent, lo = mine, hi = mine;
  if (!s_.alone) {
    MPI_Allreduce(&mine, &lo, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &hi, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
  }
  res_.sent_min = lo, res_.sent_max = hi;
  return res_;
}

Traffic Runner::traffic() const {
  return dp_.traffic() + (cut_ ? tp_.traffic() : Traffic()) +
         (context_ ? cp_.traffic() : Traffic());
}

}  // namespace ms::parallel_step
