// GradBuckets: the gradient-bucket state machine that overlaps gradient
// communication with backward. DDP (data_parallel.h) and ZeRO-2/3
// (../zero/stage2.h) are both built on it; they differ only in what they send.
//
// The idea is the DDP paper's (Li et al., "PyTorch Distributed: Experiences on
// Accelerating Data Parallel Training", VLDB 2020, §3.2): parameters are grouped
// into buckets in roughly the order backward produces their gradients; each
// parameter's gradient hook reports its arrival; when a bucket's last gradient
// has arrived, its collective starts (nonblocking) while backward keeps
// computing earlier layers. DeepSpeed's ZeRO-2 does the same with
// `reduce_bucket_size` (the bucket) and `overlap_comm` (send while backward runs).
//
// Rules the machine enforces:
//  * Buckets launch strictly in bucket order on every rank: collectives match up
//    across ranks by order, so bucket k waits for bucket k-1 even if its own
//    gradients came first (autograd may finish them in a different order on
//    different ranks).
//  * At most `max_in_flight` buckets are in flight (0 = no bound): launching one
//    more first completes the oldest. ZeRO-2 bounds it to keep the full
//    gradients in flight to a few buckets; DDP's buckets are its gradient
//    storage anyway, so it does not.
//  * A round is one backward: every bucket launches once. When the last one has
//    launched, the counters start over for the next backward.
//
// What a bucket's communication IS is the owner's: `launch(k)` starts it and
// returns its Work, `complete(k)` runs once that Work is done (always in bucket
// order). DDP launches an all-reduce in place; ZeRO-2 packs the bucket, frees
// the full gradients, reduce-scatters, and on completion adds its slice.
#pragma once
#include <deque>
#include <functional>
#include <vector>

#include "parallel/comm/communicator.h"

namespace ms {

class GradBuckets {
 public:
  using Launch = std::function<Work(int bucket)>;
  using Complete = std::function<void(int bucket)>;

  // `buckets` lists parameter indices per bucket, in launch order; every
  // parameter in [0, num_params) is in exactly one.
  GradBuckets(std::vector<std::vector<int>> buckets, int num_params, int max_in_flight,
              Launch launch, Complete complete);
  ~GradBuckets();  // waits for what is still in flight (MPI may be using the buffers)
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  // From parameter `param`'s gradient hook: counts it, and launches every
  // bucket whose turn has come.
  void grad_ready(int param);

  // What happens to the buckets of this round that have not launched (a
  // parameter that got no gradient counts as zero) when flush() is called in a
  // round in which NO gradient arrived:
  //   LaunchAll  launch them all (DDP: finishing a sync after micro-steps that
  //              only accumulated still averages everything);
  //   Skip       launch nothing (ZeRO-2 flushes before every micro-step's
  //              backward, and the first one has nothing to send).
  enum class IfIdle { LaunchAll, Skip };
  // Launches what this round has left, in order, then completes everything in
  // flight. Afterwards no communication is pending and a new round begins.
  void flush(IfIdle if_idle);

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  const std::vector<int>& bucket(int k) const { return buckets_[k]; }
  int bucket_of(int param) const { return bucket_of_[param]; }
  // Buckets whose Work is not complete yet, oldest first.
  const std::deque<int>& in_flight() const { return in_flight_; }
  // How many buckets launched from a gradient hook — that is, while backward
  // was still running — between the last two flushes.
  int launched_during_backward() const { return last_launched_by_hooks_; }

 private:
  void launch_in_order();  // every ready bucket whose turn it is
  void complete_oldest();
  bool round_started() const;

  std::vector<std::vector<int>> buckets_;
  std::vector<int> bucket_of_;  // parameter -> bucket
  int max_in_flight_;
  Launch launch_;
  Complete complete_;
  std::vector<int> waiting_;  // per bucket: gradients still to arrive this round
  std::vector<bool> ready_;   // per bucket: all arrived, not launched yet
  int next_ = 0;              // the bucket whose turn it is to launch
  std::deque<int> in_flight_;
  std::vector<Work> work_;  // per bucket: its collective while in flight
  int launched_since_flush_ = 0, launched_by_hooks_ = 0, last_launched_by_hooks_ = 0;
};

}  // namespace ms
