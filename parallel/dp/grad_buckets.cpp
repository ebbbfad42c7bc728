#include "parallel/dp/grad_buckets.h"

namespace ms {

GradBuckets::GradBuckets(std::vector<std::vector<int>> buckets, int num_params, int max_in_flight,
                         Launch launch, Complete complete)
    : buckets_(std::move(buckets)),
      bucket_of_(num_params, -1),
      max_in_flight_(max_in_flight),
      launch_(std::move(launch)),
      complete_(std::move(complete)) {
  MS_ASSERT(max_in_flight_ >= 0, "GradBuckets: max_in_flight ", max_in_flight_);
  for (size_t k = 0; k < buckets_.size(); ++k) {
    for (int i : buckets_[k]) {
      MS_ASSERT(i >= 0 && i < num_params && bucket_of_[i] < 0, "GradBuckets: parameter ", i,
                " is out of range or in two buckets");
      bucket_of_[i] = static_cast<int>(k);
    }
    waiting_.push_back(static_cast<int>(buckets_[k].size()));
  }
  for (int i = 0; i < num_params; ++i)
    MS_ASSERT(bucket_of_[i] >= 0, "GradBuckets: parameter ", i, " is in no bucket");
  ready_.assign(buckets_.size(), false);
  work_.resize(buckets_.size());
}

GradBuckets::~GradBuckets() {
  for (Work& w : work_) w.wait();
}

void GradBuckets::grad_ready(int param) {
  const int k = bucket_of_[param];
  if (--waiting_[k] > 0) return;
  ready_[k] = true;
  const int before = launched_since_flush_;
  launch_in_order();
  launched_by_hooks_ += launched_since_flush_ - before;
}

void GradBuckets::launch_in_order() {
  const int n = num_buckets();
  while (next_ < n && ready_[next_]) {
    const int k = next_++;
    // Bounded in flight (DeepSpeed's overlap_comm double-buffers the same way):
    // one bucket communicates while backward fills the next.
    while (max_in_flight_ > 0 && static_cast<int>(in_flight_.size()) >= max_in_flight_)
      complete_oldest();
    work_[k] = launch_(k);
    in_flight_.push_back(k);
    ready_[k] = false;
    waiting_[k] = static_cast<int>(buckets_[k].size());
    ++launched_since_flush_;
  }
  if (next_ == n) next_ = 0;  // every bucket is out: the next backward starts a new round
  // Open MPI moves a nonblocking collective along only inside MPI calls, so
  // polling here also keeps the earlier buckets progressing.
  while (!in_flight_.empty() && work_[in_flight_.front()].test()) complete_oldest();
}

void GradBuckets::complete_oldest() {
  const int k = in_flight_.front();
  work_[k].wait();
  work_[k] = Work();
  in_flight_.pop_front();
  complete_(k);
}

bool GradBuckets::round_started() const {
  if (next_ != 0) return true;
  for (int k = 0; k < num_buckets(); ++k)
    if (waiting_[k] != static_cast<int>(buckets_[k].size())) return true;
  return false;
}

void GradBuckets::flush(IfIdle if_idle) {
  const bool idle = launched_since_flush_ == 0 && !round_started();
  if (round_started() || (idle && if_idle == IfIdle::LaunchAll)) {
    for (int k = next_; k < num_buckets(); ++k) ready_[k] = true;
    launch_in_order();
  }
  while (!in_flight_.empty()) complete_oldest();
  last_launched_by_hooks_ = launched_by_hooks_;
  launched_by_hooks_ = launched_since_flush_ = 0;
}

}  // namespace ms
