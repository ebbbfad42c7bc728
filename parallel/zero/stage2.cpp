#include "parallel/zero/stage2.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "parallel/dp/data_parallel.h"

namespace ms {

ZeroStage2::ZeroStage2(std::vector<Tensor> params, Communicator dp, size_t bucket_bytes)
    : ZeroStage2(params, std::move(dp), bucket_by_size(params, bucket_bytes)) {}

ZeroStage2::ZeroStage2(std::vector<Tensor> params, Communicator dp,
                       const std::vector<std::vector<int>>& groups)
    : ZeroShardedStage(std::move(params), std::move(dp), groups) {
  // The only gradient memory that lasts: my slices, 4Ψ/D. Each slice's
  // optimizer tensor reads its part of it as .grad.
  grad_shard_ = zeros({flat_.shard_numel()});
  for (int g = 0; g < flat_.num_groups(); ++g) {
    const FlatGroup& grp = flat_.group(g);
    shard_[g].set_grad(narrow(grad_shard_, 0, grp.shard_offset, grp.slice));
    waiting_.push_back(static_cast<int>(grp.params.size()));
  }
  ready_.assign(flat_.num_groups(), false);
}

// Gradients: no flat copy is kept. We only count arrivals per group; the
// parameter keeps the .grad backward gave it until its group is launched.
void ZeroStage2::on_grad_ready(int i) {
  int g = flat_.group_of(i);
  if (--waiting_[g] == 0) {
    ready_[g] = true;
    launch_ready_groups();
  }
}

// In group order on every rank, as DDP launches its buckets.
void ZeroStage2::launch_ready_groups() {
  while (next_to_launch_ < flat_.num_groups() && ready_[next_to_launch_]) {
    const int g = next_to_launch_++;
    // Double buffering, like DeepSpeed's overlap_comm: at most two buckets in
    // flight, so one communicates while backward fills the next, and the
    // full-gradient memory in flight stays two buckets instead of growing to 4Ψ.
    while (in_flight_.size() >= 2) complete_oldest();
    InFlight f{g, flat_.pack_grads(g), Tensor::empty({flat_.group(g).slice}), Work()};
    // The full gradients are released right away: this line is stage 2.
    for (int i : flat_.group(g).params) flat_.params()[i].zero_grad();
    f.work = dp_.ireduce_scatter(f.bucket, f.averaged, ReduceOp::Avg);
    in_flight_.push_back(std::move(f));
    note_memory();
    ready_[g] = false;
    waiting_[g] = static_cast<int>(flat_.group(g).params.size());
  }
  if (next_to_launch_ == flat_.num_groups()) next_to_launch_ = 0;  // all out: next backward
  // Open MPI moves a nonblocking collective along only inside MPI calls, so
  // polling here also keeps the earlier buckets progressing.
  while (!in_flight_.empty() && in_flight_.front().work.test()) complete_oldest();
}

// Waits for the oldest reduce-scatter and adds my averaged slice into the
// shard (adding: micro-steps accumulate there). Its bucket is freed here.
void ZeroStage2::complete_oldest() {
  InFlight& f = in_flight_.front();
  f.work.wait();
  Tensor grad = shard_[f.group].grad();
  add_(grad, f.averaged);
  in_flight_.pop_front();
}

void ZeroStage2::finish_pending() {
  // A group with a parameter that got no gradient is launched now (that
  // gradient counts as zero), still in order.
  bool started = next_to_launch_ != 0;
  for (int g = 0; g < flat_.num_groups(); ++g)
    started |= waiting_[g] != static_cast<int>(flat_.group(g).params.size());
  if (started) {
    for (int g = next_to_launch_; g < flat_.num_groups(); ++g) ready_[g] = true;
    launch_ready_groups();
  }
  NoGradGuard no_grad;
  while (!in_flight_.empty()) complete_oldest();
}

// Before each micro-step's backward: the previous micro-step's buckets are done.
void ZeroStage2::set_gradient_sync(bool) {
  finish_pending();
}

void ZeroStage2::reduce_gradients() {
  finish_pending();
}

void ZeroStage2::after_step() {
  NoGradGuard no_grad;
  fill_(grad_shard_, 0);
  all_gather_params();  // unchanged from stage 1
  note_memory();
}

void ZeroStage2::count_memory(MemoryCounter& counter) const {
  ZeroShardedStage::count_memory(counter);
  counter.add(MemoryCounter::Grads, grad_shard_);
  for (const InFlight& f : in_flight_) {
    counter.add(MemoryCounter::Buffers, f.bucket);
    counter.add(MemoryCounter::Buffers, f.averaged);
  }
}

// Full parameters (4 bytes per padded element); gradients and optimizer state
// only for my slices.
size_t ZeroStage2::layout_bytes(size_t K) const {
  size_t padded = 0;
  for (int g = 0; g < flat_.num_groups(); ++g) padded += flat_.group(g).padded;
  return 4 * padded + (4 + K) * static_cast<size_t>(flat_.shard_numel());
}

}  // namespace ms
