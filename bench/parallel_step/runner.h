// One setup of the dense or the cp table, built once; every setup takes one
// step per round, in turn (bench/bench_parallel_step.cpp says why).
#pragma once
#include <memory>
#include <vector>

#include "bench/parallel_step/common.h"
#include "nn/gpt.h"
#include "parallel/comm/communicator.h"
#include "parallel/cp/cp_gpt.h"
#include "parallel/tp/tp_gpt.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms::parallel_step {

// step() runs one timed training step. Rank 1 holds nothing for the
// one-process setups and rests through their steps.
class Runner {
 public:
  Runner(const Setup& s, Communicator& world, const std::vector<int32_t>& xs,
         const std::vector<int32_t>& ys);

  // Milliseconds of the slowest rank; the first call records the loss.
  void step(bool timed);

  // Collective over the world for the multi-rank setups.
  Result result();

 private:
  // This rank's traffic on its dp group and, under tp or cp, that group.
  Traffic traffic() const;

  Setup s_;
  Communicator dp_, tp_, cp_;
  std::shared_ptr<GPT> serial_;
  std::shared_ptr<TpGPT> cut_;
  std::shared_ptr<CpGPT> context_;
  std::unique_ptr<ZeroOptimizer> engine_;
  Tensor x_, y_;
  std::vector<double> ms_, cpu_ms_;  // the slowest rank's, per timed step
  Traffic before_;
  bool counting_ = false;
  Result res_;
};

}  // namespace ms::parallel_step
