// Runs the `minispeed` program as a user would, for tests of the CLI.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace ms::test {

struct CliRun {
  int code;            // exit status, -1 if killed
  std::string output;  // stdout and stderr
};

inline CliRun run_minispeed(const std::string& args) {
  const char* dir = std::getenv("MS_BUILD_DIR");
  // Under SAN=1 Open MPI's unloaded plugins show up as leaks LeakSanitizer
  // cannot attribute (see the Makefile), so the child runs without leak
  // detection. No effect on a normal build.
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 " + std::string(dir ? dir : "build") +
                    "/minispeed " + args + " 2>&1";
  CliRun r{-1, ""};
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) r.output.append(buf, n);
  int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ms::test
