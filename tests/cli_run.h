// Runs the `minispeed` program as a user would, for tests of the CLI.
#pragma once
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "catch_compat.h"

namespace ms::test {

struct CliRun {
  int code;            // exit status, -1 if killed
  std::string output;  // stdout and stderr
};

// Where the binaries are (make test sets MS_BUILD_DIR; SAN=1 builds elsewhere).
inline std::string build_dir() {
  const char* dir = std::getenv("MS_BUILD_DIR");
  return dir ? dir : "build";
}

// `launcher` runs before the program (e.g. mpirun); args follow it.
inline CliRun run_minispeed(const std::string& args, const std::string& launcher = "") {
  // minispeed starts MPI; under SAN=1 Open MPI's unloaded plugins show up as
  // leaks LeakSanitizer cannot attribute (see the Makefile), so the child runs
  // without leak detection. No effect on a normal build.
  // Every bad input must end within seconds; timeout (exit code 124) turns a
  // hang into a failure instead of a test run that never ends.
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 timeout 60 " + launcher + build_dir() +
                    "/minispeed " + args + " 2>&1";
  CliRun r{-1, ""};
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) r.output.append(buf, n);
  int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A user error: exit code 1 and exactly one line, `error: ...` containing
// `expect` (no MPI banner, no stack).
inline void check_one_line_error(const std::string& args, const std::string& expect) {
  CliRun r = run_minispeed(args);
  INFO("minispeed " << args << "\n" << r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find(expect) != std::string::npos);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK(r.output.rfind("error: ", 0) == 0);
}

}  // namespace ms::test
