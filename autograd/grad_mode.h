// Grad mode: the one global in minispeed (thread-local, as in PyTorch). Inside
// a NoGradGuard ops record no graph — for optimizer steps, evaluation, sampling.
#pragma once

namespace ms {

bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace ms
