// Every rank of a job must run the same configuration. mpirun's MPMD form
// (`mpirun -np 1 minispeed train --n-embd 64 : -np 1 minispeed train --n-embd
// 32`) or a launcher that builds command lines per host can start ranks that
// differ; then collectives of different sizes deadlock or corrupt memory, and
// a different --lr silently trains diverging replicas. PyTorch's
// DistributedDataParallel guards the same way: its constructor compares the
// parameter shapes of every rank (_verify_param_shape_across_processes)
// before its first all-reduce.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/flags.h"
#include "parallel/comm/communicator.h"
#include "parallel/comm/runtime.h"

namespace ms {

// Collective, and the first one a command makes: compares a hash of
// `command` and every parsed flag (given or default) across the ranks. If any
// differ, every rank throws the same AgreedError naming the first differing
// field and two of its values, e.g.
//   ranks disagree on --n-embd: 64 on rank 0, 32 on rank 1
// Values compare as parsed numbers where they are numbers (1e-3 == 0.001).
void agree_on_flags(Communicator& world, const std::string& command, const Flags& flags);

// Collective. `error` is this rank's failure ("" = none). If any rank failed,
// every rank throws the same AgreedError: the lowest failing rank's message,
// naming that rank.
void agree_on_outcome(Communicator& world, const std::string& error);

// Runs f() on every rank; an ms::Error on any rank becomes the same
// AgreedError on all (so a file missing on one machine ends the job with one
// message, not one rank's abort racing the others'). Alone, f's error passes
// through unchanged.
template <typename F>
auto on_every_rank(Communicator& world, F&& f) -> decltype(f()) {
  if (world.size() == 1) return f();
  std::optional<decltype(f())> result;
  std::string error;
  try {
    result.emplace(f());
  } catch (const Error& e) {
    error = e.what();
  }
  agree_on_outcome(world, error);
  return std::move(*result);
}

}  // namespace ms
