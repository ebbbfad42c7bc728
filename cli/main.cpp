// minispeed: the command-line program. `minispeed help` lists the commands.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli/commands.h"
#include "parallel/comm/runtime.h"

namespace {

const char* kUsage =
    "usage: minispeed <command> [flags]\n"
    "\n"
    "commands:\n"
    "  train            train a GPT on raw bytes (run under mpirun -np N for data parallelism)\n"
    "  sample           generate text from trained weights\n"
    "  estimate-memory  per-rank memory of each ZeRO stage for a model size (no training)\n"
    "  schedule         a pipeline schedule (gpipe, 1f1b, interleaved) simulated: bubble, memory, SVG\n"
    "  consolidate      a checkpoint of any layout -> one Hugging Face GPT-2 .safetensors\n"
    "  help             this message\n"
    "\n"
    "`minispeed <command> --help` lists a command's flags and defaults.\n";

}  // namespace

int main(int argc, char** argv) {
  // A write past RLIMIT_FSIZE (`ulimit -f`, a batch system's file-size quota)
  // raises SIGXFSZ, whose default kills the process before it can say which
  // file failed; ignored, the write returns EFBIG and the save's own error
  // names the file, like a full disk's ENOSPC.
  std::signal(SIGXFSZ, SIG_IGN);
  // Idle OpenMP threads spin by default, and on a small machine the spinning
  // steals the cores the other threads (or ranks) need: a 2-thread training
  // step ran 1.45x faster with OMP_WAIT_POLICY=PASSIVE (bench_train_step).
  // libgomp reads the variable once, at load time, so set it and start over.
  // Through the binary's real path, not /proc/self/exe: the kernel names a
  // process after the file it executed, and exec of /proc/self/exe made every
  // run "exe" in ps (pgrep/pkill minispeed found nothing).
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
      self[n] = '\0';
      execv(self, argv);  // on failure, carry on with the default policy
    }
  }
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1];
  // Errors are reported by run_distributed: alone, one line `error: ...` and
  // exit code 1; with several ranks, the rank is named and the job aborted.
  return ms::run_distributed(argc, argv, [&](ms::Communicator& world) -> int {
    if (command == "train") return ms::train_command(argc, argv, world);
    if (command == "sample") return ms::sample_command(argc, argv, world);
    if (command == "estimate-memory") return ms::estimate_memory_command(argc, argv, world);
    if (command == "schedule") return ms::schedule_command(argc, argv, world);
    if (command == "consolidate") return ms::consolidate_command(argc, argv, world);
    throw ms::Error("minispeed: unknown command '" + command +
                    "' (valid: train, sample, estimate-memory, schedule, consolidate, help)");
  });
}
