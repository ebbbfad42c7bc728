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

// Turns grad mode back on for a scope, e.g. inside a backward function that
// recomputes a forward (activation checkpointing does).
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace ms
